#include "common/data/zip_reader.h"

#include <zip.h>

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace metatrain::data {

absl::StatusOr<std::unique_ptr<ZipReader>> ZipReader::Open(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  int error = 0;
  // ZIP_CHECKCONS: also reject archives whose local headers disagree with the directory.
  zip* archive = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &error);
  if (archive == nullptr) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, error);
    absl::Status status = absl::DataLossError(
        absl::StrCat(path, ": not a readable zip archive (", zip_error_strerror(&ze),
                     "); the file may be truncated or corrupt, download it again"));
    zip_error_fini(&ze);
    return status;
  }
  std::unique_ptr<ZipReader> reader(new ZipReader(path, archive));
  const zip_int64_t n = zip_get_num_entries(archive, 0);
  reader->entries_.reserve(n);
  for (zip_int64_t i = 0; i < n; ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(archive, i, 0, &st) != 0 || (st.valid & ZIP_STAT_NAME) == 0) {
      return absl::DataLossError(absl::StrCat(path, ": unreadable directory entry ", i));
    }
    reader->entries_.push_back(Entry{st.name, i, (st.valid & ZIP_STAT_SIZE) ? st.size : 0});
  }
  return reader;
}

ZipReader::~ZipReader() { zip_discard(archive_); }

absl::StatusOr<std::string> ZipReader::Read(const Entry& entry) {
  // The size comes from the archive; refuse absurd ones instead of allocating them.
  constexpr uint64_t kMaxEntryBytes = uint64_t{1} << 30;
  if (entry.size > kMaxEntryBytes) {
    return absl::DataLossError(absl::StrCat(path_, ": entry ", entry.name, " claims ", entry.size,
                                            " bytes (corrupt archive?)"));
  }
  zip_file_t* file = zip_fopen_index(archive_, entry.index, 0);
  if (file == nullptr) {
    return absl::DataLossError(
        absl::StrCat(path_, ": cannot open entry ", entry.name, " (", zip_strerror(archive_), ")"));
  }
  std::string bytes(entry.size, '\0');
  uint64_t got = 0;
  while (got < entry.size) {
    const zip_int64_t n = zip_fread(file, bytes.data() + got, entry.size - got);
    if (n <= 0) break;
    got += n;
  }
  // One more read reaches end of stream, where libzip checks the CRC.
  char extra;
  const zip_int64_t tail = got == entry.size ? zip_fread(file, &extra, 1) : -1;
  std::string error = tail != 0 ? zip_file_strerror(file) : "";
  zip_fclose(file);
  if (tail != 0) {
    return absl::DataLossError(absl::StrCat(path_, ": entry ", entry.name, " is corrupt (", got,
                                            " of ", entry.size, " bytes; ", error, ")"));
  }
  return bytes;
}

}  // namespace metatrain::data
