#!/usr/bin/python3
"""The Grafana dashboard (deploy/grafana/dashboards/metatrain.json) against the metrics
contract (docs/operations.md) and against a real Prometheus scraping real processes.

  dashboard_prometheus_test.py --static
      Fast, no tools needed: the JSON parses; every panel has the provisioned datasource, a
      title, a description and targets; every metric a query names is in docs/operations.md,
      every label it names is a documented one (job_id, never job, for a job), per-job
      metrics are selected by job_id="$job_id", rate windows are $__rate_interval; and, where
      promtool is installed, every query parses as PromQL.

  dashboard_prometheus_test.py COORDINATOR WORKER METACTL
      The static checks, then for real: a coordinator and 2 workers on loopback with
      --metrics_listen 127.0.0.1:0; Debian's Prometheus scraping them every second (a config
      that `promtool check config` passes); a short classification job submitted with metactl
      that must succeed; then every query of the dashboard (each panel's targets and the
      job_id variable), with the job's id and the Grafana interval variables filled in, must
      return at least one series from Prometheus's HTTP API; `up` is 1 for the 3 targets; each
      process's /metrics passes `promtool check metrics` and serves every metric
      docs/operations.md lists for its role.

Exit 0 when every check passes, 1 when one fails, 77 (skipped) when prometheus or promtool
is missing, unless METATRAIN_REQUIRE_DEPLOY_TOOLS is set (then a missing tool fails).
Standard library only. Every process it starts is stopped on exit, also on failure.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.environ.get("METATRAIN_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "dashboards", "metatrain.json")
DATASOURCES = os.path.join(ROOT, "deploy", "grafana", "provisioning", "datasources",
                           "prometheus.yml")
OPERATIONS = os.path.join(ROOT, "docs", "operations.md")

# What the Grafana variables become when the test evaluates the queries. The job runs for
# tens of seconds and the queries are evaluated just after it ends, so a one-minute rate
# window holds the whole job.
RATE_INTERVAL = "1m"
GRAFANA_VARIABLES = {
    "__rate_interval": RATE_INTERVAL, "__interval": "5s", "__interval_ms": "5000",
    "__range": "5m", "__range_s": "300", "__range_ms": "300000",
}
# Labels Prometheus adds to every series (job: the scrape job; instance: the target) and
# the histogram bucket label.
PROMETHEUS_LABELS = {"job", "instance", "le"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan", "atan2"}

failures = 0


def check(what, ok, detail=""):
    global failures
    if ok:
        print(f"ok: {what}")
    else:
        failures += 1
        print(f"FAIL: {what}" + (f"\n  {detail}" if detail else ""))
    sys.stdout.flush()
    return ok


def finish():
    print(f"{failures} failed" if failures else "all checks passed")
    sys.exit(1 if failures else 0)


# --- the contract: docs/operations.md --------------------------------------------------------
def read_contract():
    """({metric: (type, section)}, {documented label}) from docs/operations.md's tables."""
    metrics, labels = {}, set()
    section = ""
    with open(OPERATIONS) as f:
        for line in f:
            if line.startswith("## "):
                section = line[3:].strip()
                continue
            row = re.match(r"^\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?`\s*\|\s*(\w+)\s*\|", line)
            if section == "Labels":
                label = re.match(r"^\|\s*`([a-z_]+)`\s*\|", line)
                if label:
                    labels.add(label.group(1))
            elif row and row.group(3) in ("counter", "gauge", "histogram", "summary"):
                metrics[row.group(1)] = (row.group(3), section)
    return metrics, labels


def series_names(metrics):
    """Every series name a query may use: histograms add _bucket, _sum and _count."""
    names = set()
    for name, (kind, _) in metrics.items():
        names.add(name)
        if kind == "histogram":
            names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


# --- PromQL, as far as the checks need it ----------------------------------------------------
def promql_names(expr):
    """(metric names, label names) an expression uses. Not a parser: enough for the queries
    a dashboard holds (selectors, aggregations with by/without, vector matching)."""
    labels = set()
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    for selector in re.findall(r"\{([^}]*)\}", text):
        labels.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", selector))
    text = re.sub(r"\{[^}]*\}", " ", text)
    for group in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                            text):
        labels.update(l.strip() for l in group.split(",") if l.strip())
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    text = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end():].lstrip()
        if word in KEYWORDS or following.startswith("("):
            continue  # a keyword, or a function / aggregation called
        names.add(word)
    return names, labels


def substitute(expr, job_id):
    """The query Grafana would send: its variables filled in."""
    values = dict(GRAFANA_VARIABLES, job_id=job_id)

    def value(match):
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def variable_query(variable):
    query = variable.get("query", "")
    if isinstance(query, dict):
        query = query.get("query", "")
    return query or variable.get("definition", "")


# --- the dashboard -------------------------------------------------------------------------
def dashboard_queries(dashboard):
    """[(panel title, refId, legend, expr)] of every panel's targets, rows' nested panels
    included."""
    out = []

    def walk(panels):
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                out.append((panel.get("title", "?"), target.get("refId", "?"),
                            target.get("legendFormat", ""), target.get("expr", "")))

    walk(dashboard.get("panels", []))
    return out


def all_panels(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def provisioned_datasource_uid():
    with open(DATASOURCES) as f:
        match = re.search(r"^\s*uid:\s*[\"']?([^\"'\s#]+)", f.read(), re.M)
    return match.group(1) if match else None


def static_checks(require_tools):
    """Checks of the dashboard file itself. Returns the dashboard (None if it is unreadable)."""
    try:
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
    except (OSError, ValueError) as e:
        check("the dashboard JSON parses", False, f"{DASHBOARD}: {e}")
        return None
    check("the dashboard JSON parses", True)
    metrics, documented_labels = read_contract()
    check("docs/operations.md lists metrics and labels",
          len(metrics) > 40 and "job_id" in documented_labels, (len(metrics), documented_labels))
    known_series = series_names(metrics)
    known_labels = documented_labels | PROMETHEUS_LABELS
    uid = provisioned_datasource_uid()

    check("uid is `metatrain`", dashboard.get("uid") == "metatrain", dashboard.get("uid"))
    check("schemaVersion is 37 or later", dashboard.get("schemaVersion", 0) >= 37,
          dashboard.get("schemaVersion"))
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    job_variable = variables.get("job_id", {})
    check("template variable job_id is label_values(metatrain_job_state, job_id)",
          re.sub(r"\s", "", variable_query(job_variable))
          == "label_values(metatrain_job_state,job_id)", job_variable)
    check("the job_id variable queries the provisioned datasource",
          (job_variable.get("datasource") or {}).get("uid") == uid, job_variable.get("datasource"))

    ids = [p.get("id") for p in all_panels(dashboard)]
    check("panel ids are unique", len(ids) == len(set(ids)), ids)
    rows = [p for p in all_panels(dashboard) if p.get("type") == "row"]
    check("the panels are grouped in rows", len(rows) >= 7, [r.get("title") for r in rows])

    cells = {}
    for panel in all_panels(dashboard):
        title = panel.get("title", "")
        pos = panel.get("gridPos", {})
        if not check(f"panel {title!r}: has a gridPos within 24 columns",
                     all(k in pos for k in "hwxy") and pos["x"] + pos["w"] <= 24, pos):
            continue
        overlap = [cells[(x, y)] for x in range(pos["x"], pos["x"] + pos["w"])
                   for y in range(pos["y"], pos["y"] + pos["h"]) if (x, y) in cells]
        check(f"panel {title!r}: overlaps no other panel", not overlap, overlap[:1])
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                cells[(x, y)] = title
        if panel.get("type") == "row":
            check(f"row {title!r}: has a title", bool(title.strip()))
            continue
        targets = panel.get("targets", [])
        check(f"panel {title!r}: has a title, a description and targets",
              bool(title.strip()) and len(panel.get("description", "").strip()) >= 40
              and bool(targets) and all(t.get("expr", "").strip() for t in targets),
              {k: panel.get(k) for k in ("title", "description", "targets")})
        sources = [panel.get("datasource")] + [t.get("datasource") for t in targets
                                               if "datasource" in t]
        check(f"panel {title!r}: uses the provisioned Prometheus datasource (uid {uid})",
              all(isinstance(s, dict) and s.get("uid") == uid and s.get("type") == "prometheus"
                  for s in sources), sources)

    queries = dashboard_queries(dashboard)
    expressions = [(f"panel {t!r} {r}", e) for t, r, _, e in queries]
    expressions.append(("variable job_id", "metatrain_job_state"))
    for where, expr in expressions:
        names, labels = promql_names(expr)
        check(f"{where}: names only metrics of docs/operations.md", names and names <= known_series,
              f"{sorted(names - known_series) or 'no metric'} in {expr}")
        check(f"{where}: names only documented labels", labels <= known_labels,
              f"{sorted(labels - known_labels)} in {expr}")
        per_job = [n for n in names if n.startswith("metatrain_job_")]
        if per_job and where != "variable job_id":
            selectors = re.findall(r"(metatrain_job_[a-z_]+)(\{[^}]*\})?", expr)
            check(f"{where}: selects per-job metrics by job_id=\"$job_id\"",
                  all('job_id="$job_id"' in (s or "") for _, s in selectors), expr)
        windows = re.findall(r"\[([^\]]*)\]", expr)
        check(f"{where}: rate windows are $__rate_interval",
              all(w == "$__rate_interval" for w in windows), windows)

    promtool = shutil.which("promtool")
    if promtool:
        # promtool parses rule expressions: every query, with its variables filled in.
        with tempfile.TemporaryDirectory(prefix="metatrain-dashboard-") as tmp:
            rules = os.path.join(tmp, "rules.yml")
            with open(rules, "w") as f:
                f.write("groups:\n  - name: dashboard\n    rules:\n")
                for i, (where, expr) in enumerate(expressions):
                    f.write(f"      - record: dashboard_query_{i}\n"
                            f"        expr: {json.dumps(substitute(expr, 'job-000001'))}\n")
            result = subprocess.run([promtool, "check", "rules", rules], capture_output=True,
                                    text=True)
            check("every query parses as PromQL (promtool check rules)", result.returncode == 0,
                  (result.stdout + result.stderr).strip()[-2000:])
    elif require_tools:
        check("promtool is installed (deploy/install-deps.sh)", False)
    else:
        print("note: promtool missing, queries not parsed")
    return dashboard


# --- processes -----------------------------------------------------------------------------
class Process:
    """A child process whose stdout and stderr are drained by threads into its log; lines are
    kept so that the test can wait for one."""

    def __init__(self, name, argv, log_dir, env=None):
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        self.log = open(os.path.join(log_dir, f"{name}.log"), "w")
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env, bufsize=1)
        self.threads = [threading.Thread(target=self._drain, args=(stream, tag), daemon=True)
                        for stream, tag in ((self.popen.stdout, "out"), (self.popen.stderr, "err"))]
        for t in self.threads:
            t.start()

    def _drain(self, stream, tag):
        for line in stream:
            with self.cond:
                self.lines.append((tag, line.rstrip("\n")))
                self.log.write(f"[{tag}] {line}")
                self.log.flush()
                self.cond.notify_all()

    def wait_for(self, tag, pattern, timeout):
        """The first match of pattern in a line of stdout ("out") or stderr ("err"), or None
        when the process exits or the time runs out first."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        seen = 0
        with self.cond:
            while True:
                for line_tag, line in self.lines[seen:]:
                    match = regex.search(line) if line_tag == tag else None
                    if match:
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or self.popen.poll() is not None:
                    return None
                self.cond.wait(min(left, 0.2))

    def tail(self, n=20):
        with self.cond:
            return "\n".join(f"  {self.name} [{t}] {l}" for t, l in self.lines[-n:])

    def stop(self):
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        for t in self.threads:
            t.join(5)
        self.log.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


class Prometheus:
    def __init__(self, base):
        self.base = base

    def query(self, expr, at=None):
        """The result list of an instant query; raises RuntimeError with Prometheus's error."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.base}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            body = json.loads(http_get(url, timeout=10))
        except urllib.error.HTTPError as e:
            body = json.loads(e.read().decode() or "{}")
        if body.get("status") != "success":
            raise RuntimeError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]["result"]


def wait_until(predicate, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # not up yet: connection refused, bad JSON, ...
            value = None
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# A 3-way classification job (so the accuracy series exist) on procedural images, no dataset
# needed: validations every 250 steps and checkpoints every 100 give those phases and
# histograms observations. It runs about 10 s on an idle 2-core machine (longer under load),
# long enough for many 1 s scrapes while it trains.
JOB = {
    "name": "dashboard-test", "algorithm": "maml",
    "model": {"kind": "mlp", "hidden_sizes": [32]},
    "tasks": {"family": "synthetic_images", "ways": 3, "shots": 1, "query_size": 3,
              "image_size": 14},
    "meta_batch_size": 6,
    "inner": {"steps": 1, "lr": 0.4, "test_steps": 2},
    "outer": {"kind": "adam", "lr": 0.003},
    "steps": 2000, "validation_interval": 250, "validation_tasks": 12,
    "checkpoint_interval": 100, "test_tasks": 30, "seed": 7,
}


def live_checks(dashboard, coordinator_bin, worker_bin, metactl_bin, require_tools):
    prometheus_bin, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not (prometheus_bin and promtool):
        if require_tools:
            check("prometheus and promtool are installed (deploy/install-deps.sh)", False)
            return
        print("SKIP: prometheus or promtool is missing (deploy/install-deps.sh installs them)")
        sys.exit(77)
    for program in (coordinator_bin, worker_bin, metactl_bin):
        if not check(f"{program} is executable", os.access(program, os.X_OK)):
            return

    tmp = tempfile.mkdtemp(prefix="metatrain-dashboard-test-")
    processes = []
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", METATRAIN_CACHE_DIR=os.path.join(tmp, "cache"))
    env.pop("METATRAIN_COORDINATOR", None)
    os.makedirs(env["METATRAIN_CACHE_DIR"])

    def start(name, argv):
        process = Process(name, argv, tmp, env)
        processes.append(process)
        return process

    def show_logs():
        for p in processes:
            print(p.tail())

    try:
        # --- coordinator and workers, each serving /metrics on a port of its own choosing ----
        coordinator = start("coordinator", [
            coordinator_bin, "--listen", "127.0.0.1:0", "--insecure", "--checkpoint_dir",
            os.path.join(tmp, "checkpoints"), "--metrics_listen", "127.0.0.1:0"])
        listening = coordinator.wait_for("out", r"listening on (\S+:\d+)", 60)
        metrics = coordinator.wait_for("err", r"metrics on (http://\S+/metrics)", 60)
        if not check("the coordinator prints its gRPC and metrics addresses",
                     listening and metrics, coordinator.tail()):
            return
        address = listening.group(1)
        endpoints = {"coordinator": metrics.group(1)}
        for i in (1, 2):
            name = f"worker{i}"
            worker = start(name, [worker_bin, "--coordinator", address, "--insecure", "--name", name,
                                  "--threads", "1", "--metrics_listen", "127.0.0.1:0"])
            metrics = worker.wait_for("err", r"metrics on (http://\S+/metrics)", 60)
            if not check(f"{name} prints its metrics address", metrics, worker.tail()):
                return
            endpoints[name] = metrics.group(1)
        print("metrics endpoints: " + ", ".join(f"{k} {v}" for k, v in endpoints.items()))

        # --- Prometheus ---------------------------------------------------------------------
        def target(url):
            return urllib.parse.urlsplit(url).netloc

        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: metatrain-coordinator\n"
                    f"    static_configs:\n      - targets: [\"{target(endpoints['coordinator'])}\"]\n"
                    "  - job_name: metatrain-worker\n"
                    "    static_configs:\n      - targets: ["
                    + ", ".join(f"\"{target(endpoints[w])}\"" for w in ("worker1", "worker2"))
                    + "]\n")
        result = subprocess.run([promtool, "check", "config", config], capture_output=True,
                                text=True)
        if not check("promtool check config passes on the test's prometheus.yml",
                     result.returncode == 0, result.stdout + result.stderr):
            return
        port = free_port()
        prometheus = start("prometheus", [
            prometheus_bin, f"--config.file={config}",
            f"--storage.tsdb.path={os.path.join(tmp, 'tsdb')}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"])
        api = Prometheus(f"http://127.0.0.1:{port}")
        ready = wait_until(lambda: http_get(f"{api.base}/-/ready") is not None, 60)
        if not check("Prometheus starts and is ready", ready, prometheus.tail()):
            return

        def all_up():
            values = [s["value"][1] for s in api.query('up{job=~"metatrain-.*"}')]
            return len(values) == 3 and all(v == "1" for v in values)

        up = wait_until(all_up, 30)
        if not check("Prometheus scrapes the coordinator and both workers (up == 1)", up,
                     api.query("up") if not up else ""):
            show_logs()
            return

        # --- a job, submitted and watched with metactl --------------------------------------
        job_file = os.path.join(tmp, "job.json")
        with open(job_file, "w") as f:
            json.dump(JOB, f)
        started = time.monotonic()
        try:
            watch = subprocess.run([metactl_bin, "--coordinator", address, "--insecure", "submit", job_file,
                                    "--watch"], capture_output=True, text=True, env=env,
                                   timeout=240)
        except subprocess.TimeoutExpired as e:
            check("the job ends within 240 s", False,
                  (e.stdout or b"").decode(errors="replace")[-1500:])
            show_logs()
            return
        job_seconds = time.monotonic() - started
        job_id = (watch.stdout.splitlines() or [""])[0].strip()
        if not check(f"the job {job_id} SUCCEEDED (metactl submit --watch exits 0, "
                     f"{job_seconds:.0f} s)", watch.returncode == 0 and job_id,
                     (watch.stdout[-1500:] + watch.stderr[-1500:]).strip()):
            show_logs()
            return

        # Prometheus must have scraped the end of the job before the queries are evaluated.
        succeeded = f'metatrain_job_state{{job_id="{job_id}",state="SUCCEEDED"}} == 1'
        if not check("Prometheus sees the job SUCCEEDED, labelled job_id",
                     wait_until(lambda: api.query(succeeded), 30)):
            print(api.query(f'{{job_id="{job_id}"}}')[:5])
            show_logs()
            return
        time.sleep(2)  # a couple more scrapes, so every series has the job's last values
        at = time.time()

        # --- every query of the dashboard returns a series ----------------------------------
        for title, ref, legend, expr in dashboard_queries(dashboard):
            query = substitute(expr, job_id)
            try:
                result = api.query(query, at)
                error = ""
            except RuntimeError as e:
                result, error = [], str(e)
            label = f"panel {title!r} query {ref} ({legend})"
            check(f"{label} returns a series", result,
                  f"{error or 'no series'}: {query}")
            if result and all(s["value"][1] in ("NaN", "+Inf", "-Inf") for s in result):
                print(f"note: {label} returns only NaN/Inf: {query}")
        variables = {v.get("name"): v for v in dashboard["templating"]["list"]}
        values = re.match(r"label_values\(\s*([^,]+?)\s*,\s*(\w+)\s*\)",
                          variable_query(variables["job_id"]))
        if check("the job_id variable is label_values(METRIC, LABEL)", values):
            metric, label = values.groups()
            result = api.query(f"count by ({label}) ({metric})", at)
            found = sorted(s["metric"].get(label, "") for s in result)
            check(f"the job_id variable offers the job ({found})", job_id in found)

        result = api.query('up{job=~"metatrain-.*"}', at)
        check("up is 1 for the coordinator and both workers",
              len(result) == 3 and all(s["value"][1] == "1" for s in result),
              [(s["metric"]["instance"], s["value"][1]) for s in result])

        # --- each endpoint: lint-free exposition that serves the whole contract -------------
        contract, _ = read_contract()
        for name, url in endpoints.items():
            try:
                body = http_get(url)
            except OSError as e:
                check(f"{name}: serves {url}", False, e)
                continue
            lint = subprocess.run([promtool, "check", "metrics"], input=body,
                                  capture_output=True, text=True)
            check(f"{name}: promtool check metrics passes on {url}", lint.returncode == 0,
                  (lint.stdout + lint.stderr).strip()[-2000:])
            served = set(re.findall(r"^# TYPE (\S+) ", body, re.M))
            served |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", body, re.M))
            role = "Coordinator" if name == "coordinator" else "Worker"
            missing = sorted(m for m, (kind, section) in contract.items()
                             if (section.startswith(role) or section == "Both processes")
                             and m not in served and m + "_bucket" not in served)
            check(f"{name}: serves every metric docs/operations.md lists for it", not missing,
                  missing)
    finally:
        for p in reversed(processes):
            p.stop()
        if failures:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv):
    require_tools = bool(os.environ.get("METATRAIN_REQUIRE_DEPLOY_TOOLS"))
    # ctest ends a test that runs too long with SIGTERM: stop the children then too.
    def terminated(*_):
        check("the test ran to its end (it got SIGTERM)", False)
        sys.exit(1)

    signal.signal(signal.SIGTERM, terminated)
    if argv == ["--static"]:
        static_checks(require_tools)
        finish()
    if len(argv) != 3:
        sys.exit(__doc__)
    dashboard = static_checks(require_tools)
    if dashboard is not None:
        live_checks(dashboard, *argv, require_tools)
    finish()


if __name__ == "__main__":
    main(sys.argv[1:])
