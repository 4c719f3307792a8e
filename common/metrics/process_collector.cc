#include "common/metrics/process_collector.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"

namespace metatrain::metrics {
namespace {

prometheus::MetricFamily OneValue(const char* name, const char* help, prometheus::MetricType type,
                                  double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
  return family;
}

// Seconds since the epoch at which the system booted (/proc/stat "btime").
double BootTime() {
  std::ifstream stat("/proc/stat");
  std::string key;
  double value = 0;
  while (stat >> key) {
    if (key == "btime") {
      stat >> value;
      return value;
    }
    stat.ignore(1 << 20, '\n');
  }
  return 0;
}

}  // namespace

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  std::vector<prometheus::MetricFamily> families;
  const double page_size = static_cast<double>(sysconf(_SC_PAGESIZE));
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));

  std::ifstream statm("/proc/self/statm");
  double total_pages = 0, resident_pages = 0;
  if (statm >> total_pages >> resident_pages) {
    families.push_back(OneValue("process_resident_memory_bytes", "Resident memory size in bytes.",
                                prometheus::MetricType::Gauge, resident_pages * page_size));
    families.push_back(OneValue("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                                prometheus::MetricType::Gauge, total_pages * page_size));
  }

  // /proc/self/stat: the command name (field 2) may hold spaces; fields after its closing
  // parenthesis are space-separated: utime and stime are fields 14 and 15, starttime 22.
  std::ifstream stat_file("/proc/self/stat");
  std::string line;
  if (std::getline(stat_file, line)) {
    const size_t close = line.rfind(')');
    if (close != std::string::npos) {
      std::istringstream rest(line.substr(close + 2));
      std::string field;
      double utime = 0, stime = 0, start = 0;
      for (int index = 3; rest >> field; ++index) {
        if (index == 14) (void)absl::SimpleAtod(field, &utime);
        if (index == 15) (void)absl::SimpleAtod(field, &stime);
        if (index == 22) {
          (void)absl::SimpleAtod(field, &start);
          break;
        }
      }
      families.push_back(OneValue("process_cpu_seconds_total",
                                  "Total user and system CPU time spent in seconds.",
                                  prometheus::MetricType::Counter, (utime + stime) / ticks));
      families.push_back(OneValue("process_start_time_seconds",
                                  "Start time of the process since unix epoch in seconds.",
                                  prometheus::MetricType::Gauge, BootTime() + start / ticks));
    }
  }
  return families;
}

}  // namespace metatrain::metrics
