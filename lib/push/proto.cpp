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

std::string encode(const Message& m) {
  std::string json = json_text(m.body);
  std::string out(4, '\0');
  ByteWriter w(out);
  w.u8(static_cast<uint8_t>(m.type));
  w.bytes(json);
  out += m.blob;
  uint32_t len = static_cast<uint32_t>(out.size() - 4);
  out[0] = static_cast<char>(len >> 24);
  out[1] = static_cast<char>(len >> 16);
  out[2] = static_cast<char>(len >> 8);
  out[3] = static_cast<char>(len);
  return out;
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

Status send(Writer& w, const Message& m) {
  return w.write(encode(m));
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
  std::string buf(n, '\0');
  have = 0;
  while (have < n) {
    CM_ASSIGN(size_t got, r.read(buf.data() + have, n - have));
    if (got == 0)
      return Error("'" + peer + "' sent a truncated message (" + std::to_string(have) + " of " +
                       std::to_string(n) + " bytes)",
                   kExitBadInput);
    have += got;
  }
  return decode(buf, peer);
}

}  // namespace cm::push
