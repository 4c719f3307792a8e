#include "common/meta/torch_file.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/serialize.h>
#include <zip.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::meta {
namespace {

// LibTorch 1.13's torch::pickle_load reads through an adapter that copies whatever range
// the zip reader asks for, unchecked: a truncated or corrupt file makes it read past the
// buffer (AddressSanitizer, `make test-asan`: DamagedResumeTest/truncated). This one
// returns only the bytes that exist; the zip reader then reports a short read.
class BoundedReader final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BoundedReader(const std::string& bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= bytes_.size()) return 0;
    n = std::min<size_t>(n, bytes_.size() - pos);
    std::memcpy(buf, bytes_.data() + pos, n);
    return n;
  }

 private:
  const std::string& bytes_;
};

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("not a torch.save file: ", what));
}

// The records torch.save (Python, any version since 1.6) and LibTorch's pickle_save write
// under the archive's one top-level folder.
bool KnownRecord(absl::string_view rest) {
  static const char* const kNames[] = {"data.pkl",
                                       "version",
                                       ".data/version",
                                       "byteorder",
                                       ".format_version",
                                       ".storage_alignment",
                                       ".data/serialization_id"};
  for (const char* name : kNames) {
    if (rest == name) return true;
  }
  if (absl::ConsumePrefix(&rest, "data/")) {
    return !rest.empty() && rest.size() <= 20 &&
           std::all_of(rest.begin(), rest.end(), [](char c) { return absl::ascii_isdigit(c); });
  }
  return false;
}

std::string DtypeNames(const std::vector<at::ScalarType>& dtypes) {
  std::vector<std::string> names;
  for (at::ScalarType t : dtypes) names.push_back(c10::toString(t));
  return absl::StrJoin(names, ", ");
}

// NOTE [Pickle depth]: LibTorch's unpickler builds nested values without bounding their
// depth, and destroys them recursively: a data.pkl of a million nested lists (3 bytes each)
// overflows the stack (a crash found while writing this check). So data.pkl is walked
// first, opcode by opcode, tracking which container ends up inside which (through the memo
// too, which can link containers built apart), and refused if that nesting is deeper than
// kMaxPickleDepth, if it has a cycle, or if it uses an opcode torch.save does not write.
constexpr int kMaxPickleDepth = 64;

absl::Status CheckPickleStructure(absl::string_view pkl) {
  auto bad = [](const std::string& what) { return Bad(absl::StrCat("data.pkl: ", what)); };
  constexpr int kMark = -2, kLeaf = -1;
  std::vector<int> stack;                  // kMark, kLeaf or a container's node index
  std::vector<std::vector<int>> children;  // per container node
  std::map<uint64_t, int> memo;
  size_t pos = 0;
  auto need = [&](size_t n) { return pos + n <= pkl.size(); };
  auto read_le = [&](size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i)
      v |= static_cast<uint64_t>(static_cast<uint8_t>(pkl[pos + i])) << (8 * i);
    pos += n;
    return v;
  };
  auto node = [&](std::vector<int> kids) {
    children.push_back(std::move(kids));
    return static_cast<int>(children.size() - 1);
  };
  auto pop = [&](int* out) {
    if (stack.empty() || stack.back() == kMark) return false;
    *out = stack.back();
    stack.pop_back();
    return true;
  };
  auto pop_to_mark = [&](std::vector<int>* out) {
    while (!stack.empty() && stack.back() != kMark) {
      out->push_back(stack.back());
      stack.pop_back();
    }
    if (stack.empty()) return false;
    stack.pop_back();
    return true;
  };
  auto link = [&](int parent, const std::vector<int>& kids) {
    if (parent < 0) return;
    for (int k : kids) {
      if (k >= 0) children[parent].push_back(k);
    }
  };
  bool stopped = false;
  while (!stopped) {
    if (!need(1)) return bad("ends without STOP");
    const uint8_t op = static_cast<uint8_t>(pkl[pos++]);
    int a = 0, b = 0;
    std::vector<int> items;
    switch (op) {
      case 0x80:  // PROTO
        if (!need(1)) return bad("truncated");
        pos += 1;
        break;
      case 0x95:  // FRAME
        if (!need(8)) return bad("truncated");
        pos += 8;
        break;
      case '.':  // STOP
        stopped = true;
        break;
      case '(':  // MARK
        stack.push_back(kMark);
        break;
      case 'N':
      case 0x88:
      case 0x89:  // NONE, NEWTRUE, NEWFALSE
        stack.push_back(kLeaf);
        break;
      case 'K':
      case 'M':
      case 'J':
      case 'G': {  // BININT1, BININT2, BININT, BINFLOAT
        const size_t n = op == 'K' ? 1 : op == 'M' ? 2 : op == 'J' ? 4 : 8;
        if (!need(n)) return bad("truncated");
        pos += n;
        stack.push_back(kLeaf);
        break;
      }
      case 0x8a:
      case 'U':
      case 'C':
      case 0x8c:
      case 'X':
      case 'T':
      case 'B':
      case 0x8d:
      case 0x8e: {  // LONG1, short/long strings and bytes: a length, then the data
        const size_t n = (op == 0x8a || op == 'U' || op == 'C' || op == 0x8c) ? 1
                         : (op == 0x8d || op == 0x8e)                         ? 8
                                                                              : 4;
        if (!need(n)) return bad("truncated");
        const uint64_t len = read_le(n);
        if (len > pkl.size() - pos) return bad("truncated");
        pos += len;
        stack.push_back(kLeaf);
        break;
      }
      case 'c': {  // GLOBAL: module\nname\n
        for (int line = 0; line < 2; ++line) {
          const size_t end = pkl.find('\n', pos);
          if (end == absl::string_view::npos) return bad("truncated");
          pos = end + 1;
        }
        stack.push_back(kLeaf);
        break;
      }
      case 0x93:  // STACK_GLOBAL
        if (!pop(&a) || !pop(&b)) return bad("malformed");
        stack.push_back(kLeaf);
        break;
      case ']':
      case '}':
      case ')':  // EMPTY_LIST, EMPTY_DICT, EMPTY_TUPLE
        stack.push_back(node({}));
        break;
      case 't':
      case 'l':
      case 'd':  // TUPLE, LIST, DICT (from the mark)
        if (!pop_to_mark(&items)) return bad("malformed");
        stack.push_back(node({}));
        link(stack.back(), items);
        break;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        for (int i = 0; i < op - 0x84; ++i) {
          if (!pop(&a)) return bad("malformed");
          items.push_back(a);
        }
        stack.push_back(node({}));
        link(stack.back(), items);
        break;
      }
      case 'a':  // APPEND
        if (!pop(&a) || stack.empty() || stack.back() == kMark) return bad("malformed");
        link(stack.back(), {a});
        break;
      case 's':  // SETITEM
        if (!pop(&a) || !pop(&b) || stack.empty() || stack.back() == kMark) {
          return bad("malformed");
        }
        link(stack.back(), {a, b});
        break;
      case 'e':
      case 'u':  // APPENDS, SETITEMS (from the mark)
        if (!pop_to_mark(&items) || stack.empty() || stack.back() == kMark) {
          return bad("malformed");
        }
        link(stack.back(), items);
        break;
      case 'b':  // BUILD
        if (!pop(&a) || stack.empty() || stack.back() == kMark) return bad("malformed");
        link(stack.back(), {a});
        break;
      case 'R':
      case 0x81:  // REDUCE, NEWOBJ
        if (!pop(&a) || !pop(&b)) return bad("malformed");
        stack.push_back(node({}));
        link(stack.back(), {a, b});
        break;
      case 'Q':  // BINPERSID
        if (!pop(&a)) return bad("malformed");
        stack.push_back(node({}));
        link(stack.back(), {a});
        break;
      case 'q':
      case 'r':
      case 0x94: {  // BINPUT, LONG_BINPUT, MEMOIZE
        uint64_t index = memo.size();
        if (op != 0x94) {
          const size_t n = op == 'q' ? 1 : 4;
          if (!need(n)) return bad("truncated");
          index = read_le(n);
          // Writers number memo entries in order (Python's pickle and torch.save use
          // len(memo)); LibTorch's unpickler sizes its memo table by the largest index, so
          // one far ahead would make it allocate gigabytes (found by the checkpoint fuzzer).
          if (index > memo.size()) return bad("memo index out of order");
        }
        if (stack.empty() || stack.back() == kMark) return bad("malformed");
        memo[index] = stack.back();
        break;
      }
      case 'h':
      case 'j': {  // BINGET, LONG_BINGET
        const size_t n = op == 'h' ? 1 : 4;
        if (!need(n)) return bad("truncated");
        auto it = memo.find(read_le(n));
        if (it == memo.end()) return bad("reads a memo entry never written");
        stack.push_back(it->second);
        break;
      }
      case '2':  // DUP
        if (stack.empty()) return bad("malformed");
        stack.push_back(stack.back());
        break;
      case '0':  // POP
        if (stack.empty()) return bad("malformed");
        stack.pop_back();
        break;
      case '1':  // POP_MARK
        if (!pop_to_mark(&items)) return bad("malformed");
        break;
      default:
        return bad(absl::StrCat("opcode 0x", absl::Hex(op), " at byte ", pos - 1,
                                " is not one torch.save writes"));
    }
  }
  // The deepest chain of containers, without recursion: depth-first with an explicit stack;
  // a node met again while on the current path is a cycle.
  std::vector<int> depth(children.size(), 0);
  std::vector<uint8_t> state(children.size(), 0);  // 0 new, 1 on the path, 2 done
  for (size_t root = 0; root < children.size(); ++root) {
    if (state[root] != 0) continue;
    std::vector<std::pair<int, size_t>> path = {{static_cast<int>(root), 0}};
    state[root] = 1;
    while (!path.empty()) {
      auto& [n, next] = path.back();
      if (next < children[n].size()) {
        const int child = children[n][next++];
        if (state[child] == 1) return bad("containers that contain themselves");
        if (state[child] == 0) {
          state[child] = 1;
          path.emplace_back(child, 0);
        }
        continue;
      }
      int d = 1;
      for (int child : children[n]) d = std::max(d, depth[child] + 1);
      depth[n] = d;
      state[n] = 2;
      if (d > kMaxPickleDepth) {
        return bad(absl::StrCat("values nested deeper than ", kMaxPickleDepth));
      }
      path.pop_back();
    }
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status CheckTorchArchive(absl::string_view bytes, const TorchFileLimits& limits) {
  if (static_cast<int64_t>(bytes.size()) > limits.max_file_bytes) {
    return Bad(absl::StrCat(bytes.size(), " bytes, over the limit of ", limits.max_file_bytes));
  }
  if (bytes.size() < 22 || !absl::StartsWith(bytes, "PK\x03\x04")) {
    return Bad("not a zip archive (torch.save's format since PyTorch 1.6)");
  }
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
  if (source == nullptr) {
    zip_error_fini(&error);
    return absl::ResourceExhaustedError("cannot read the archive (out of memory)");
  }
  zip_t* archive = zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, &error);
  if (archive == nullptr) {
    absl::Status status =
        Bad(absl::StrCat("unreadable zip archive (", zip_error_strerror(&error), ")"));
    zip_source_free(source);
    zip_error_fini(&error);
    return status;
  }
  zip_error_fini(&error);
  absl::Status status = [&]() -> absl::Status {
    const zip_int64_t n = zip_get_num_entries(archive, 0);
    if (n <= 0) return Bad("empty archive");
    if (n > limits.max_entries) {
      return Bad(absl::StrCat(n, " records, over the limit of ", limits.max_entries));
    }
    std::string prefix;
    std::set<std::string> names;
    uint64_t total = 0;
    bool has_pickle = false, has_version = false;
    for (zip_int64_t i = 0; i < n; ++i) {
      zip_stat_t st;
      zip_stat_init(&st);
      if (zip_stat_index(archive, i, 0, &st) != 0 || (st.valid & ZIP_STAT_NAME) == 0 ||
          (st.valid & ZIP_STAT_SIZE) == 0 || (st.valid & ZIP_STAT_COMP_SIZE) == 0 ||
          (st.valid & ZIP_STAT_COMP_METHOD) == 0) {
        return Bad(absl::StrCat("unreadable directory entry ", i));
      }
      const std::string name = st.name;
      const auto slash = name.find('/');
      if (slash == std::string::npos || slash == 0) {
        return Bad(absl::StrCat("record '", name, "' is not inside the archive's folder"));
      }
      if (prefix.empty()) prefix = name.substr(0, slash + 1);
      if (name.compare(0, prefix.size(), prefix) != 0) {
        return Bad(absl::StrCat("records in two folders ('", prefix, "', '", name, "')"));
      }
      const std::string rest = name.substr(prefix.size());
      if (!KnownRecord(rest)) return Bad(absl::StrCat("unexpected record '", name, "'"));
      if (!names.insert(name).second) return Bad(absl::StrCat("record '", name, "' twice"));
      // torch.save stores records uncompressed, so none can be larger than the file: a
      // compressed one could unpack to anything.
      if (st.comp_method != ZIP_CM_STORE || st.size != st.comp_size) {
        return Bad(absl::StrCat("record '", name, "' is compressed"));
      }
      if (st.size > bytes.size()) {
        return Bad(absl::StrCat("record '", name, "' claims ", st.size, " bytes in a file of ",
                                bytes.size()));
      }
      total += st.size;
      if (total > bytes.size()) return Bad("records add up to more than the file");
      if (rest == "data.pkl") {
        has_pickle = true;
        if (static_cast<int64_t>(st.size) > limits.max_pickle_bytes) {
          return Bad(absl::StrCat("data.pkl has ", st.size, " bytes, over the limit of ",
                                  limits.max_pickle_bytes));
        }
      }
      has_version = has_version || rest == "version" || rest == ".data/version";
    }
    if (!has_pickle) return Bad("no data.pkl record");
    if (!has_version) return Bad("no version record");
    // NOTE [Pickle depth].
    const std::string pickle_name = prefix + "data.pkl";
    zip_stat_t st;
    zip_stat_init(&st);
    zip_file_t* file = zip_fopen(archive, pickle_name.c_str(), 0);
    if (file == nullptr || zip_stat(archive, pickle_name.c_str(), 0, &st) != 0) {
      if (file != nullptr) zip_fclose(file);
      return Bad("unreadable data.pkl");
    }
    std::string pickle(st.size, '\0');
    const zip_int64_t got = zip_fread(file, pickle.data(), st.size);
    zip_fclose(file);
    if (got != static_cast<zip_int64_t>(st.size)) return Bad("unreadable data.pkl");
    return CheckPickleStructure(pickle);
  }();
  zip_discard(archive);
  return status;
}

absl::Status CheckLoadedTensor(const std::string& name, const at::Tensor& t,
                               const std::vector<at::ScalarType>& dtypes,
                               const TorchFileLimits& limits) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("'", name, "': ", what));
  };
  if (!t.defined()) return bad("undefined tensor");
  if (t.layout() != at::kStrided || t.is_quantized() || !t.device().is_cpu() || !t.has_storage()) {
    return bad("not a dense CPU tensor");
  }
  if (std::find(dtypes.begin(), dtypes.end(), t.scalar_type()) == dtypes.end()) {
    return bad(absl::StrCat("dtype ", c10::toString(t.scalar_type()), " (expected ",
                            DtypeNames(dtypes), ")"));
  }
  // The unpickler takes sizes, strides and offset from the pickle and the storage's size
  // from the record, without comparing them: a view reaching past its storage would read
  // out of bounds. Checked in 128-bit arithmetic, before anything touches the data.
  __int128 elements = 1;
  __int128 last = t.storage_offset();  // index of the view's last element
  if (t.storage_offset() < 0) return bad("negative storage offset");
  for (int64_t d = 0; d < t.dim(); ++d) {
    const int64_t size = t.size(d), stride = t.stride(d);
    if (size < 0 || stride < 0) return bad("negative size or stride");
    elements *= size;
    if (elements > limits.max_tensor_elements) {
      return bad(absl::StrCat("more than ", limits.max_tensor_elements, " elements"));
    }
    if (size > 0) last += static_cast<__int128>(size - 1) * stride;
  }
  if (elements > 0) {
    const __int128 needed = (last + 1) * static_cast<__int128>(t.element_size());
    if (needed > static_cast<__int128>(t.storage().nbytes())) {
      return bad(absl::StrCat("shape [", absl::StrJoin(t.sizes(), ", "), "] needs more than the ",
                              t.storage().nbytes(), " bytes stored for it"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, at::Tensor>> ParseTorchTensorDict(
    const std::string& bytes, const std::vector<at::ScalarType>& dtypes,
    const TorchFileLimits& limits) {
  RETURN_IF_ERROR(CheckTorchArchive(bytes, limits));
  // What torch::pickle_load does, over a reader that stays within `bytes`.
  ASSIGN_OR_RETURN(
      c10::IValue value,
      CatchTorch(
          "not a torch.save file",
          [&] {
            caffe2::serialize::PyTorchStreamReader reader(std::make_shared<BoundedReader>(bytes));
            return torch::jit::readArchiveAndTensors(
                "data", /*pickle_prefix=*/"", /*tensor_prefix=*/"",
                /*type_resolver=*/c10::nullopt, /*obj_loader=*/c10::nullopt,
                /*device=*/c10::nullopt, reader);
          },
          absl::StatusCode::kInvalidArgument));
  if (!value.isGenericDict()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a dict of tensors (name -> tensor), got ", value.tagKind()));
  }
  const c10::Dict<c10::IValue, c10::IValue> dict = value.toGenericDict();
  if (static_cast<int64_t>(dict.size()) > limits.max_tensors) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the dict has ", dict.size(), " entries, over the limit of ", limits.max_tensors));
  }
  std::map<std::string, at::Tensor> out;
  for (const auto& entry : dict) {
    if (!entry.key().isString()) {
      return absl::InvalidArgumentError(
          absl::StrCat("dict key is a ", entry.key().tagKind(), ", not a string"));
    }
    const std::string key = entry.key().toStringRef();
    if (!entry.value().isTensor()) {
      return absl::InvalidArgumentError(
          absl::StrCat("dict entry '", key, "' is a ", entry.value().tagKind(), ", not a tensor"));
    }
    const at::Tensor t = entry.value().toTensor();
    RETURN_IF_ERROR(CheckLoadedTensor(key, t, dtypes, limits));
    out[key] = t;
  }
  return out;
}

}  // namespace metatrain::meta
