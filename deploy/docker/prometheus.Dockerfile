# Prometheus from Debian's package, for the docker-compose cluster: no registry image needed.
# Its configuration is mounted from deploy/prometheus/ (docker-compose.yml).
ARG BASE_IMAGE=debian:bookworm
FROM ${BASE_IMAGE}
RUN rm -f /etc/apt/apt.conf.d/docker-clean
RUN --mount=type=cache,id=metatrain-apt-cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,id=metatrain-apt-lists,target=/var/lib/apt/lists,sharing=locked \
    apt-get update -q && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus && \
    mkdir -p /prometheus && chown prometheus:prometheus /prometheus
USER prometheus
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", \
     "--web.listen-address=:9090"]
