#include "push/job.hpp"

#include <algorithm>
#include <cstring>
#include <system_error>
#include <thread>
#include <vector>

namespace cm::push {

namespace {

// "inline": true: the file follows the chunk table in the blob.
bool has_inline(const Message& m) {
  auto in = m.body.find("inline");
  return in != m.body.end() && in->is_boolean() && in->get<bool>();
}

}  // namespace

void JobMeta::put(Message& m) const {
  m.body["job"] = id;
  m.body["name"] = name;
  m.body["size"] = size;
  m.body["sha256"] = to_hex(sha256);
  m.body["chunk_size"] = chunk_size;
  m.body["deliver"] = deliver;
  m.blob.clear();
  for (const Digest& d : chunks)
    m.blob.append(reinterpret_cast<const char*>(d.data()), d.size());
}

Result<JobMeta> JobMeta::get(const Message& m) {
  JobMeta j;
  CM_ASSIGN(j.id, m.num("job"));
  CM_ASSIGN(j.name, m.str("name"));
  CM_ASSIGN(j.size, m.num("size"));
  CM_ASSIGN(std::string hex, m.str("sha256"));
  CM_ASSIGN(uint64_t chunk, m.num("chunk_size"));
  if (!from_hex(hex, j.sha256))
    return Error("bad sha256 in NOTIFY", kExitBadInput);
  if (chunk < kMinChunk || chunk > kMaxChunk)
    return Error("bad chunk size in NOTIFY", kExitBadInput);
  j.chunk_size = static_cast<uint32_t>(chunk);
  auto d = m.body.find("deliver");
  j.deliver = d == m.body.end() || (d->is_boolean() && d->get<bool>());
  if (j.name.empty() || j.name.size() > 255 || j.name.find('/') != std::string::npos || j.name == "." ||
      j.name == ".." || j.name[0] == '.')
    return Error("bad file name in NOTIFY", kExitBadInput);
  bool with_data = has_inline(m);
  if (with_data && j.size > kInlineBytes)
    return Error("an inline file larger than " + std::to_string(kInlineBytes) + " bytes", kExitBadInput);
  if (j.size > (uint64_t{1} << 44) || m.blob.size() != j.chunk_count() * 32 + (with_data ? j.size : 0))
    return Error("the chunk table does not match the size", kExitBadInput);
  for (size_t i = 0; i < j.chunk_count() * 32; i += 32) {
    Digest h;
    std::memcpy(h.data(), m.blob.data() + i, 32);
    j.chunks.push_back(h);
  }
  return j;
}

void JobMeta::put_inline(Message& m, const std::string& data) const {
  m.body["inline"] = true;
  m.blob += data;
}

Result<std::string> JobMeta::inline_data(const Message& m) const {
  if (!has_inline(m))
    return std::string();
  size_t table = static_cast<size_t>(chunk_count() * 32);
  if (m.blob.size() != table + size)
    return Error("the inline file does not match the size", kExitBadInput);
  std::string data = m.blob.substr(table);
  for (uint64_t i = 0; i < chunk_count(); i++)
    if (cm::sha256(std::string_view(data).substr(static_cast<size_t>(i * chunk_size),
                                                 static_cast<size_t>(chunk_length(i)))) != chunks[i])
      return Error("the inline file fails the SHA-256 of chunk " + std::to_string(i), kExitBadInput);
  if (cm::sha256(data) != sha256)
    return Error("the inline file fails its SHA-256", kExitBadInput);
  return data;
}

Result<JobMeta> describe_file(const std::string& path, uint64_t id, uint32_t chunk_size) {
  CM_ASSIGN(auto in, open_input(path));
  JobMeta j;
  j.id = id;
  j.name = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  j.chunk_size = chunk_size;
  // Two SHA-256 streams over every byte: the chunks' and the whole file's.
  // Read in batches of whole chunks, the whole file's digest goes on a
  // second thread while this one hashes the chunks: this runs before the
  // first leader is notified (about 70 ms per 100 MiB on one core).
  const size_t batch = std::max<size_t>(chunk_size, (size_t{4} << 20) / chunk_size * chunk_size);
  std::vector<char> buf(batch);
  Sha256 whole, part;
  for (bool end = false; !end;) {
    size_t have = 0;
    while (have < buf.size()) {
      CM_ASSIGN(size_t got, in->read(buf.data() + have, buf.size() - have));
      if (got == 0) {
        end = true;
        break;
      }
      have += got;
    }
    if (have == 0)
      break;
    std::jthread side;  // joins on every return
    try {
      side = std::jthread([&whole, &buf, have] { whole.update(buf.data(), have); });
    } catch (const std::system_error&) {
      whole.update(buf.data(), have);  // no thread to be had: here, the same digest
    }
    for (size_t at = 0; at < have; at += chunk_size) {
      size_t n = std::min<size_t>(chunk_size, have - at);
      part.update(buf.data() + at, n);
      j.chunks.push_back(part.finish());
    }
    if (side.joinable())
      side.join();  // before the buffer is refilled
    j.size += have;
  }
  j.sha256 = whole.finish();
  return j;
}

}  // namespace cm::push
