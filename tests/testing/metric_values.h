#ifndef METATRAIN_TESTS_TESTING_METRIC_VALUES_H_
#define METATRAIN_TESTS_TESTING_METRIC_VALUES_H_

// Reads one series out of collected Prometheus families, for assertions.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "prometheus/metric_family.h"

namespace metatrain::testing {

inline bool HasLabels(const prometheus::ClientMetric& metric,
                      const std::map<std::string, std::string>& labels) {
  for (const auto& [key, value] : labels) {
    bool found = false;
    for (const auto& label : metric.label) {
      found = found || (label.name == key && label.value == value);
    }
    if (!found) return false;
  }
  return true;
}

// The series of family `name` whose labels include every pair of `labels`: a counter's or
// gauge's value, or a histogram's sample count. nullopt when there is no such series.
inline std::optional<double> MetricValue(const std::vector<prometheus::MetricFamily>& families,
                                         const std::string& name,
                                         const std::map<std::string, std::string>& labels = {}) {
  for (const auto& family : families) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      if (!HasLabels(metric, labels)) continue;
      switch (family.type) {
        case prometheus::MetricType::Counter:
          return metric.counter.value;
        case prometheus::MetricType::Gauge:
          return metric.gauge.value;
        case prometheus::MetricType::Histogram:
          return static_cast<double>(metric.histogram.sample_count);
        default:
          return metric.untyped.value;
      }
    }
  }
  return std::nullopt;
}

// How many series family `name` has whose labels include `labels`.
inline int SeriesCount(const std::vector<prometheus::MetricFamily>& families,
                       const std::string& name,
                       const std::map<std::string, std::string>& labels = {}) {
  int count = 0;
  for (const auto& family : families) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      count += HasLabels(metric, labels) ? 1 : 0;
    }
  }
  return count;
}

}  // namespace metatrain::testing

#endif  // METATRAIN_TESTS_TESTING_METRIC_VALUES_H_
