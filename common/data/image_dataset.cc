#include "common/data/image_dataset.h"

namespace metatrain::data {

std::vector<std::vector<int64_t>> GroupByClass(const ImageSet& images) {
  std::vector<std::vector<int64_t>> groups(images.class_names.size());
  for (int64_t i = 0; i < images.size(); ++i) groups[images.labels[i]].push_back(i);
  return groups;
}

}  // namespace metatrain::data
