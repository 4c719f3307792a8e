#ifndef METATRAIN_COMMON_METRICS_PROCESS_COLLECTOR_H_
#define METATRAIN_COMMON_METRICS_PROCESS_COLLECTOR_H_

// process_resident_memory_bytes, process_cpu_seconds_total and process_start_time_seconds,
// the names every Prometheus client library uses, read from /proc at scrape time: nothing
// is recorded between scrapes.

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace metatrain::metrics {

class ProcessCollector final : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace metatrain::metrics

#endif  // METATRAIN_COMMON_METRICS_PROCESS_COLLECTOR_H_
