#include "push/proto.hpp"

#include "util/text.hpp"
#include "util/wire.hpp"

namespace cm::push {

const char* msg_name(Msg m) {
  switch (m) {
    case Msg::Send: return "SEND";
    case Msg::Job: return "JOB";
    case Msg::Progress: return "PROGRESS";
    case Msg::Result: return "RESULT";
    case Msg::Cluster: return "CLUSTER";
    case Msg::Ok: return "OK";
    case Msg::Error: return "ERROR";
    case Msg::Notify: return "NOTIFY";
    case Msg::Fetch: return "FETCH";
    case Msg::Chunk: return "CHUNK";
    case Msg::Next: return "NEXT";
    case Msg::Target: return "TARGET";
    case Msg::None: return "NONE";
    case Msg::Wait: return "WAIT";
    case Msg::Status: return "STATUS";
    case Msg::Delivered: return "DELIVERED";
    case Msg::Query: return "QUERY";
    case Msg::Hello: return "HELLO";
  }
  return "?";
}

Result<std::string> Message::str(const char* key) const {
  auto it = body.find(key);
  if (it == body.end() || !it->is_string())
    return Error(std::string(msg_name(type)) + " without a '" + key + "' string", kExitBadInput);
  return it->get<std::string>();
}

Result<uint64_t> Message::num(const char* key) const {
  auto it = body.find(key);
  if (it == body.end() || !it->is_number_unsigned())
    return Error(std::string(msg_name(type)) + " without a '" + key + "' number", kExitBadInput);
  return it->get<uint64_t>();
}

namespace {

// The length, the type and the JSON body: everything but the blob.
std::string encode_head(Msg type, const nlohmann::json& body, size_t blob_size, size_t* json_size = nullptr) {
  std::string json = json_text(body);
  if (json_size != nullptr)
    *json_size = json.size();
  std::string out(4, '\0');
  ByteWriter w(out);
  w.u8(static_cast<uint8_t>(type));
  w.bytes(json);
  uint32_t len = static_cast<uint32_t>(out.size() - 4 + blob_size);
  out[0] = static_cast<char>(len >> 24);
  out[1] = static_cast<char>(len >> 16);
  out[2] = static_cast<char>(len >> 8);
  out[3] = static_cast<char>(len);
  return out;
}

// A blob up to this size goes out in one write with its head.
constexpr size_t kJoinBelow = 16u << 10;
// How much of a message receive() reads before it knows where the blob starts.
constexpr size_t kHeadRead = 1024;

}  // namespace

std::string encode(const Message& m) {
  return encode_head(m.type, m.body, m.blob.size()) + m.blob;
}

Result<Message> decode(std::string_view bytes, const std::string& peer) {
  auto bad = [&](const std::string& why) {
    return Error("bad message from '" + peer + "': " + why, kExitBadInput);
  };
  ByteReader r(bytes);
  uint8_t type = r.u8();
  std::string_view json = r.bytes(kMaxJson);
  if (!r.ok())
    return bad(r.problem());
  if (type < 1 || type > kMaxMsgType)
    return bad("unknown type " + std::to_string(type));
  Message m;
  m.type = static_cast<Msg>(type);
  m.body = nlohmann::json::parse(json, nullptr, false);
  if (m.body.is_discarded() || !m.body.is_object())
    return bad(std::string("the body of a ") + msg_name(m.type) + " is not a JSON object");
  m.blob = std::string(r.raw(r.remaining()));
  return m;
}

Message error_msg(const std::string& why) {
  return Message{Msg::Error, {{"error", why}}, ""};
}

Message error_msg(const std::string& why, const char* flag) {
  Message m = error_msg(why);
  m.body[flag] = true;
  return m;
}

Status send(Writer& w, Msg type, const nlohmann::json& body, std::string_view blob) {
  size_t json_size = 0;
  std::string head = encode_head(type, body, blob.size(), &json_size);
  // What the peer would refuse (receive() below) is not sent: the error
  // stays with the sender, which can say what was too large.
  if (json_size > kMaxJson || head.size() - 4 + blob.size() > kMaxMessage)
    return Error(std::string("cannot send a ") + msg_name(type) + " of " +
                     human_bytes(head.size() + blob.size()) + ": larger than a message may be (" +
                     human_bytes(kMaxJson) + " of JSON)",
                 kExitFailure);
  if (blob.size() < kJoinBelow) {
    head.append(blob);
    return w.write(head);
  }
  CM_TRY(w.write(head));
  return w.write(blob);
}

Status send(Writer& w, const Message& m) {
  return send(w, m.type, m.body, m.blob);
}

Result<Message> receive(Reader& r, const std::string& peer) {
  unsigned char len[4];
  size_t have = 0;
  while (have < 4) {
    CM_ASSIGN(size_t got, r.read(len + have, 4 - have));
    if (got == 0) {
      if (have == 0)
        return Error("'" + peer + "' closed the connection", kExitFailure);
      return Error("'" + peer + "' sent a truncated message", kExitBadInput);
    }
    have += got;
  }
  uint32_t n = static_cast<uint32_t>(len[0]) << 24 | static_cast<uint32_t>(len[1]) << 16 |
               static_cast<uint32_t>(len[2]) << 8 | len[3];
  if (n == 0 || n > kMaxMessage)
    return Error("bad message from '" + peer + "': length " + std::to_string(n), kExitBadInput);
  have = 0;  // of the n bytes after the length
  auto fill = [&](char* p, size_t want) -> Status {
    for (size_t done = 0; done < want;) {
      CM_ASSIGN(size_t got, r.read(p + done, want - done));
      if (got == 0)
        return Error("'" + peer + "' sent a truncated message (" + std::to_string(have) + " of " +
                         std::to_string(n) + " bytes)",
                     kExitBadInput);
      done += got;
      have += got;
    }
    return {};
  };
  // The head first: where its JSON ends, the blob begins, and the rest of
  // the blob is read into a string of its own (a chunk is not copied out
  // of a message buffer). Anything odd in the head: all n bytes are read
  // and decode() says what is wrong.
  std::string head(std::min<size_t>(n, kHeadRead), '\0');
  CM_TRY(fill(head.data(), head.size()));
  size_t body_end = n;
  ByteReader br(head);
  br.u8();
  uint64_t json_len = br.varint();
  if (br.ok() && json_len <= kMaxJson && json_len <= n - (head.size() - br.remaining()))
    body_end = head.size() - br.remaining() + static_cast<size_t>(json_len);
  std::string blob;
  if (body_end > head.size()) {
    size_t at = head.size();
    head.resize(body_end);
    CM_TRY(fill(head.data() + at, body_end - at));
  } else {
    blob.assign(head, body_end);
    head.resize(body_end);
  }
  if (have < n) {
    size_t at = blob.size();
    blob.resize(at + (n - have));
    CM_TRY(fill(blob.data() + at, blob.size() - at));
  }
  CM_ASSIGN(Message m, decode(head, peer));
  if (!blob.empty())
    m.blob = std::move(blob);  // decode() saw the head alone: its blob is empty
  return m;
}

}  // namespace cm::push
