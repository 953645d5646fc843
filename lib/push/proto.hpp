// cm-push's messages, over a TLS stream (layout in cm-push(7)):
//
//   length (4 bytes, big-endian) type (1 byte) json-length (varint) json blob
//
// The JSON object carries the fields; the blob carries bulk bytes (a
// chunk of data, a table of chunk hashes). Every field is checked on the
// way in: a malformed, truncated or oversized message is an error that
// names the peer, never a crash.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "util/io.hpp"
#include "util/result.hpp"

namespace cm::push {

enum class Msg : uint8_t {
  Send = 1,      // client -> serve: distribute a file
  Job = 2,       // serve -> client: its id
  Progress = 3,  // serve -> client: the job so far
  Result = 4,    // serve -> client: the final report
  Cluster = 5,   // -> serve: a cm-elect cluster report
  Ok = 6,
  Error = 7,
  Notify = 8,      // -> agent: fetch this job from that source
  Fetch = 9,       // -> a source: the job's bytes from this offset
  Chunk = 10,      // source -> fetcher: one chunk
  Next = 11,       // agent -> serve: whom do I serve?
  Target = 12,     // serve -> agent: that one (serve notifies it)
  None = 13,       // serve -> agent: no one is left
  Wait = 14,       // serve -> agent: ask again later
  Status = 15,     // agent -> serve: receiving / complete / source failed
  Delivered = 16,  // agent -> serve: the deliver command ran
  Query = 17,      // client -> serve: a job's report
  Hello = 18,      // agent -> serve: it (re)started; notify it again of its jobs
};
inline constexpr uint8_t kMaxMsgType = 18;
const char* msg_name(Msg m);

// A body carries group reports: a leader's DELIVERED its deliver command's
// output (up to 4 MiB captured), a RESULT, PROGRESS or QUERY answer every
// leader's. 1 MiB was too little: a 130-member cm-mcast report failed its
// leader. A body larger than this is refused by send() as well as by
// receive(), so the sender knows.
inline constexpr size_t kMaxJson = 64u << 20;
inline constexpr size_t kMaxMessage = kMaxJson + (8u << 20);

// A member of a group report (cm-mcast send --json) that counts: one the
// sender expected. One it did not (not in --members) got the file but
// counts toward no quorum, here as in cm-mcast.
inline bool counted_member(const nlohmann::json& m) {
  if (!m.is_object())
    return false;
  auto e = m.find("expected");
  return e == m.end() || !e->is_boolean() || e->get<bool>();
}

struct Message {
  Msg type = Msg::Ok;
  nlohmann::json body = nlohmann::json::object();
  std::string blob;

  // Typed access to body fields: a missing or mistyped one is an error.
  Result<std::string> str(const char* key) const;
  Result<uint64_t> num(const char* key) const;
};

// An ERROR message saying why.
Message error_msg(const std::string& why);
// An ERROR with `flag` set true in its body: what kind of refusal it is
// ("denied": the peer's certificate; "usage": the sender's options), for
// the client's exit status.
Message error_msg(const std::string& why, const char* flag);

std::string encode(const Message& m);
// Decodes one message's bytes (after the length).
Result<Message> decode(std::string_view bytes, const std::string& peer);

Status send(Writer& w, const Message& m);
// The same message with its blob given apart (a chunk read into a buffer
// of its own): a large blob is written after the head, not copied into it.
Status send(Writer& w, Msg type, const nlohmann::json& body, std::string_view blob);
// Reads one message; an error names the peer and what was wrong. The blob
// is read straight into its own string.
Result<Message> receive(Reader& r, const std::string& peer);

}  // namespace cm::push
