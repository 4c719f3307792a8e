#ifndef METATRAIN_COMMON_META_RNG_H_
#define METATRAIN_COMMON_META_RNG_H_

// A small, portable random number generator. Everything random in metatrain (task
// sampling, parameter initialisation) draws from it so results are bit-identical across
// machines, standard libraries and LibTorch builds (CPU or CUDA): std:: distributions and
// torch's generators make no such promise.

#include <cstdint>
#include <vector>

namespace metatrain::meta {

// Mixes any number of 64-bit words into one seed (splitmix64 finaliser chained).
uint64_t MixSeed(std::initializer_list<uint64_t> words);

// xoshiro256** seeded through splitmix64. Not thread-safe; cheap to create per task.
class Rng {
 public:
  explicit Rng(uint64_t seed);

  uint64_t NextU64();
  // Uniform in [0, 1) with 53 random bits.
  double Uniform();
  double Uniform(double low, double high) { return low + (high - low) * Uniform(); }
  // Uniform integer in [0, n), unbiased. n > 0.
  uint64_t UniformInt(uint64_t n);
  // Standard normal (Box-Muller; one value per call for simplicity of state).
  double Normal();
  // k distinct values from [0, n) in random order (partial Fisher-Yates). k <= n.
  std::vector<int64_t> SampleWithoutReplacement(int64_t n, int64_t k);

 private:
  uint64_t s_[4];
};

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_RNG_H_
