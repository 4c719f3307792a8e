#include "common/data/resize.h"

#include <cmath>
#include <map>
#include <utility>

namespace metatrain::data {
namespace {

// Pillow's Resample.c constants and kernel (see NOTE [Lanczos as in Pillow]).
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr double kLanczosSupport = 3.0;

double Sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}

double Lanczos(double x) {
  if (-3.0 <= x && x < 3.0) return Sinc(x) * Sinc(x / 3.0);
  return 0.0;
}

// Per output pixel: the first input index and fixed-point weights (Pillow's
// precompute_coeffs + normalize_coeffs_8bpc).
struct Coefficients {
  int64_t ksize = 0;
  std::vector<int64_t> first, count;
  std::vector<int32_t> weights;  // out_size * ksize
};

Coefficients Precompute(int64_t in_size, int64_t out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = scale < 1.0 ? 1.0 : scale;
  const double support = kLanczosSupport * filter_scale;
  Coefficients c;
  c.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(out_size * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int64_t xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filter_scale;
    int64_t xmin = static_cast<int64_t>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int64_t xmax = static_cast<int64_t>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      k[x] = Lanczos((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (int64_t x = 0; x < xmax; ++x) {
      const double w = ww != 0.0 ? k[x] / ww : k[x];
      c.weights[xx * c.ksize + x] = static_cast<int32_t>(w < 0 ? -0.5 + w * (1 << kPrecisionBits)
                                                               : 0.5 + w * (1 << kPrecisionBits));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

// Coefficients depend only on the sizes, and a dataset resizes thousands of same-size
// images: computing them (hundreds of sin() calls) once per size pair halves decode time.
const Coefficients& CachedCoefficients(int64_t in_size, int64_t out_size) {
  thread_local std::map<std::pair<int64_t, int64_t>, Coefficients> cache;
  auto it = cache.find({in_size, out_size});
  if (it == cache.end()) {
    if (cache.size() > 64) cache.clear();
    it = cache.emplace(std::make_pair(in_size, out_size), Precompute(in_size, out_size)).first;
  }
  return it->second;
}

uint8_t Clip8(int64_t v) {
  if (v >= (int64_t{1} << kPrecisionBits) << 8) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

}  // namespace

DecodedImage ResizeLanczos(const DecodedImage& image, int64_t out_height, int64_t out_width) {
  const int64_t in_h = image.height, in_w = image.width, channels = image.channels;
  if (in_h == out_height && in_w == out_width) return image;
  // Pillow skips a pass whose size does not change; so do we (it changes rounding).
  const bool horizontal = in_w != out_width, vertical = in_h != out_height;
  DecodedImage mid;
  mid.channels = channels;
  mid.height = in_h;
  mid.width = out_width;
  if (horizontal) {
    const Coefficients& c = CachedCoefficients(in_w, out_width);
    mid.pixels.resize(channels * in_h * out_width);
    for (int64_t ch = 0; ch < channels; ++ch) {
      for (int64_t y = 0; y < in_h; ++y) {
        const uint8_t* row = image.pixels.data() + (ch * in_h + y) * in_w;
        uint8_t* out = mid.pixels.data() + (ch * in_h + y) * out_width;
        for (int64_t x = 0; x < out_width; ++x) {
          int64_t ss = int64_t{1} << (kPrecisionBits - 1);
          const int32_t* k = c.weights.data() + x * c.ksize;
          for (int64_t i = 0; i < c.count[x]; ++i) ss += row[c.first[x] + i] * int64_t{k[i]};
          out[x] = Clip8(ss);
        }
      }
    }
  } else {
    mid = image;
  }
  if (!vertical) return mid;
  const Coefficients& c = CachedCoefficients(in_h, out_height);
  DecodedImage out;
  out.channels = channels;
  out.height = out_height;
  out.width = out_width;
  out.pixels.resize(channels * out_height * out_width);
  for (int64_t ch = 0; ch < channels; ++ch) {
    const uint8_t* plane = mid.pixels.data() + ch * in_h * out_width;
    uint8_t* dst = out.pixels.data() + ch * out_height * out_width;
    for (int64_t y = 0; y < out_height; ++y) {
      const int32_t* k = c.weights.data() + y * c.ksize;
      for (int64_t x = 0; x < out_width; ++x) {
        int64_t ss = int64_t{1} << (kPrecisionBits - 1);
        for (int64_t i = 0; i < c.count[y]; ++i) {
          ss += plane[(c.first[y] + i) * out_width + x] * int64_t{k[i]};
        }
        dst[y * out_width + x] = Clip8(ss);
      }
    }
  }
  return out;
}

DecodedImage GrayToRgb(const DecodedImage& image) {
  if (image.channels != 1) return image;
  DecodedImage out = image;
  out.channels = 3;
  out.pixels.reserve(image.pixels.size() * 3);
  out.pixels.insert(out.pixels.end(), image.pixels.begin(), image.pixels.end());
  out.pixels.insert(out.pixels.end(), image.pixels.begin(), image.pixels.end());
  return out;
}

}  // namespace metatrain::data
