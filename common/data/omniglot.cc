#include "common/data/omniglot.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/data/dataset_cache.h"
#include "common/data/png_decoder.h"
#include "common/data/resize.h"
#include "common/data/zip_reader.h"
#include "common/status/status_macros.h"

namespace metatrain::data {
namespace {

namespace fs = std::filesystem;

// Bump when decoding/resizing changes, so that old caches are rebuilt.
constexpr int kPipelineVersion = 1;

struct SetSpec {
  const char* name;
  int characters;
};
constexpr SetSpec kSets[] = {{"images_background", kOmniglotBackgroundCharacters},
                             {"images_evaluation", kOmniglotEvaluationCharacters}};

// Where one drawing's bytes live: an entry of the set's zip or a file.
struct Drawing {
  std::string file;  // zip entry name or file path
  ZipReader::Entry entry;
};

struct SetSource {
  std::string zip_path;  // empty: folder
  std::string folder;
  std::string key;  // part of the cache key
  // "<set>/<Alphabet>/<character>" -> drawings, sorted by file name.
  std::map<std::string, std::vector<Drawing>> characters;
  std::string where() const { return zip_path.empty() ? folder : zip_path; }
};

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

int64_t MtimeNs(const struct stat& st) {
  return int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
}

bool IsPng(const std::string& name) {
  return name.size() > 4 && (name.compare(name.size() - 4, 4, ".png") == 0 ||
                             name.compare(name.size() - 4, 4, ".PNG") == 0);
}

// Finds the set as a zip (preferred: what the download is) or an unpacked folder.
absl::StatusOr<SetSource> LocateSet(const std::string& data_dir, const SetSpec& set) {
  SetSource source;
  const std::string zip = absl::StrCat(data_dir, "/", set.name, ".zip");
  const std::string folder = absl::StrCat(data_dir, "/", set.name);
  struct stat st;
  if (::stat(zip.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    source.zip_path = zip;
    source.key = absl::StrCat(set.name, ".zip:", st.st_size, ":", MtimeNs(st));
    return source;
  }
  std::error_code ec;
  if (fs::is_directory(folder, ec)) {
    source.folder = folder;
    return source;
  }
  return absl::NotFoundError(absl::StrCat("tasks.data_dir: no Omniglot found in ", data_dir,
                                          " (expected ", set.name, ".zip or ", set.name,
                                          "/; see docs/data.md)"));
}

// Fills source.characters from the zip's directory. Entries other than
// <set>/<Alphabet>/<character>/<file>.png (directories, __MACOSX, .DS_Store) are ignored.
absl::Status ListZip(const SetSpec& set, SetSource& source) {
  ASSIGN_OR_RETURN(std::unique_ptr<ZipReader> zip, ZipReader::Open(source.zip_path));
  for (const ZipReader::Entry& e : zip->entries()) {
    std::vector<std::string> parts = absl::StrSplit(e.name, '/');
    if (parts.size() != 4 || parts[0] != set.name || !IsPng(parts[3])) continue;
    source.characters[absl::StrCat(parts[0], "/", parts[1], "/", parts[2])].push_back(
        Drawing{e.name, e});
  }
  return absl::OkStatus();
}

// Fills source.characters from the folder tree; the key covers every file's size and
// mtime, so editing one drawing invalidates the cache.
absl::Status ListFolder(const SetSpec& set, SetSource& source) {
  std::error_code ec;
  int64_t files = 0, bytes = 0, newest = 0;
  for (fs::recursive_directory_iterator it(source.folder, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it.depth() != 2 || !it->is_regular_file(ec)) continue;
    const fs::path& p = it->path();
    const std::string file = p.filename().string();
    if (!IsPng(file)) continue;
    struct stat st;
    if (::stat(p.c_str(), &st) != 0) continue;
    ++files;
    bytes += st.st_size;
    newest = std::max(newest, MtimeNs(st));
    const std::string character =
        absl::StrCat(set.name, "/", p.parent_path().parent_path().filename().string(), "/",
                     p.parent_path().filename().string());
    source.characters[character].push_back(Drawing{p.string(), {}});
  }
  if (ec) {
    return absl::DataLossError(absl::StrCat(source.folder, ": cannot list (", ec.message(), ")"));
  }
  source.key = absl::StrCat(set.name, "/:", files, ":", bytes, ":", newest);
  return absl::OkStatus();
}

absl::Status VerifyCounts(const SetSpec& set, SetSource& source) {
  for (auto& [name, drawings] : source.characters) {
    std::sort(drawings.begin(), drawings.end(),
              [](const Drawing& a, const Drawing& b) { return a.file < b.file; });
    if (static_cast<int>(drawings.size()) != kOmniglotDrawingsPerCharacter) {
      return absl::DataLossError(absl::StrFormat(
          "%s: character %s has %d drawings, expected %d (partial or modified copy?)",
          source.where(), name, drawings.size(), kOmniglotDrawingsPerCharacter));
    }
  }
  if (static_cast<int>(source.characters.size()) != set.characters) {
    return absl::DataLossError(absl::StrFormat(
        "%s: found %d character folders, expected %d (partial or modified copy? download "
        "%s.zip again)",
        source.where(), source.characters.size(), set.characters, set.name));
  }
  return absl::OkStatus();
}

absl::StatusOr<DecodedImage> DecodeDrawing(const SetSource& source, ZipReader* zip,
                                           const Drawing& d, int image_size) {
  absl::StatusOr<DecodedImage> image;
  if (zip != nullptr) {
    ASSIGN_OR_RETURN(std::string bytes, zip->Read(d.entry));
    image = DecodePng(bytes, absl::StrCat(source.zip_path, ": ", d.file));
  } else {
    image = ReadPngFile(d.file);
  }
  if (!image.ok()) return image.status();
  if (image->channels != 1) {
    return absl::DataLossError(
        absl::StrCat(source.where(), ": ", d.file, " is a colour PNG; Omniglot drawings are gray"));
  }
  DecodedImage out = ResizeLanczos(*image, image_size, image_size);
  for (uint8_t& v : out.pixels) v = 255 - v;
  return out;
}

struct Job {
  const SetSource* source;
  const Drawing* drawing;
};

absl::StatusOr<ImageSet> Decode(const std::vector<SetSource>& sources, int image_size,
                                int threads) {
  ImageSet images;
  images.channels = 1;
  images.height = images.width = image_size;
  std::vector<Job> jobs;
  for (const SetSource& source : sources) {
    for (const auto& [name, drawings] : source.characters) {
      const int32_t label = images.class_names.size();
      images.class_names.push_back(name);
      for (const Drawing& d : drawings) {
        jobs.push_back(Job{&source, &d});
        images.labels.push_back(label);
      }
    }
  }
  const int64_t n = jobs.size(), image_bytes = images.image_bytes();
  images.pixels.resize(n * image_bytes);
  if (threads <= 0) {
    threads = std::clamp<int>(std::thread::hardware_concurrency(), 1, 8);
  }
  threads = std::max<int>(1, std::min<int64_t>(threads, n));
  // Each worker takes a contiguous range and stops at its first error; the error of the
  // lowest index wins, so the message does not depend on scheduling.
  std::vector<absl::Status> errors(threads);
  std::vector<int64_t> error_index(threads, n);
  auto work = [&](int t) {
    std::map<const SetSource*, std::unique_ptr<ZipReader>> zips;
    for (int64_t i = n * t / threads; i < n * (t + 1) / threads; ++i) {
      const Job& job = jobs[i];
      ZipReader* zip = nullptr;
      if (!job.source->zip_path.empty()) {
        auto& reader = zips[job.source];
        if (reader == nullptr) {
          absl::StatusOr<std::unique_ptr<ZipReader>> opened = ZipReader::Open(job.source->zip_path);
          if (!opened.ok()) {
            errors[t] = opened.status();
            error_index[t] = i;
            return;
          }
          reader = std::move(*opened);
        }
        zip = reader.get();
      }
      absl::StatusOr<DecodedImage> image =
          DecodeDrawing(*job.source, zip, *job.drawing, image_size);
      if (!image.ok()) {
        errors[t] = image.status();
        error_index[t] = i;
        return;
      }
      std::copy(image->pixels.begin(), image->pixels.end(),
                images.pixels.begin() + i * image_bytes);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (std::thread& th : pool) th.join();
  const int first = std::min_element(error_index.begin(), error_index.end()) - error_index.begin();
  if (error_index[first] < n) return errors[first];
  return images;
}

}  // namespace

absl::StatusOr<ImageSet> LoadOmniglot(const std::string& data_dir, const OmniglotOptions& options,
                                      OmniglotLoadInfo* info) {
  const auto start = std::chrono::steady_clock::now();
  OmniglotLoadInfo local;
  if (info == nullptr) info = &local;
  *info = OmniglotLoadInfo{};
  if (options.image_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tasks.image_size must be > 0 (got ", options.image_size, ")"));
  }
  std::error_code ec;
  if (data_dir.empty() || !fs::is_directory(data_dir, ec)) {
    return absl::NotFoundError(absl::StrCat(
        "tasks.data_dir: no Omniglot found in '", data_dir,
        "' (not a directory; expected images_background.zip or images_background/; see "
        "docs/data.md)"));
  }
  std::vector<SetSource> sources;
  for (const SetSpec& set : kSets) {
    ASSIGN_OR_RETURN(SetSource source, LocateSet(data_dir, set));
    // Folders are listed now (their key needs it); zips only on a cache miss.
    if (source.zip_path.empty()) RETURN_IF_ERROR(ListFolder(set, source));
    sources.push_back(std::move(source));
  }
  const std::string key =
      absl::StrCat("omniglot pipeline=", kPipelineVersion, " size=", options.image_size, " ",
                   sources[0].key, " ", sources[1].key);
  const std::string abs_dir = fs::absolute(data_dir, ec).lexically_normal().string();
  const std::string cache_dir =
      options.cache_dir.empty() ? DefaultCacheDir(data_dir) : options.cache_dir;
  info->cache_path = absl::StrFormat("%s/metatrain-omniglot-%d-%016x.cache", cache_dir,
                                     options.image_size, Fnv1a(abs_dir));
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  if (options.use_cache) {
    absl::StatusOr<ImageSet> cached = ReadImageSetCache(info->cache_path, key);
    if (cached.ok()) {
      info->from_cache = true;
      info->seconds = seconds();
      return cached;
    }
    if (!absl::IsNotFound(cached.status())) {
      info->cache_note = absl::StrCat("rebuilt: ", cached.status().message());
    }
  }
  for (size_t s = 0; s < sources.size(); ++s) {
    if (!sources[s].zip_path.empty()) RETURN_IF_ERROR(ListZip(kSets[s], sources[s]));
    RETURN_IF_ERROR(VerifyCounts(kSets[s], sources[s]));
  }
  ASSIGN_OR_RETURN(ImageSet images, Decode(sources, options.image_size, options.threads));
  if (options.use_cache) {
    absl::Status written = WriteImageSetCache(info->cache_path, key, images);
    // A read-only cache location costs start-up time, not correctness.
    if (!written.ok()) {
      absl::StrAppend(&info->cache_note, info->cache_note.empty() ? "" : "; ",
                      "not written: ", written.message());
    }
  }
  info->seconds = seconds();
  return images;
}

std::string OmniglotAlphabet(const std::string& class_name) {
  const size_t slash = class_name.rfind('/');
  return slash == std::string::npos ? class_name : class_name.substr(0, slash);
}

bool IsOmniglotBackground(const std::string& class_name) {
  return class_name.rfind("images_background/", 0) == 0;
}

}  // namespace metatrain::data
