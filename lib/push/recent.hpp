// The chunks a leader fetched last, kept in memory while it receives: a
// leader it serves at the same time (cut-through) is sent them from here
// rather than from a read of the copy just written. Not thread-safe: the
// agent holds its lock around every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>

namespace cm::push {

class RecentChunks {
 public:
  explicit RecentChunks(size_t budget = 4u << 20) : budget_(budget) {}

  // Chunk i, just verified. Kept consecutive (a gap drops what was kept),
  // the oldest dropped past the budget; the newest always stays.
  void keep(uint64_t i, std::string chunk) {
    if (!chunks_.empty() && chunks_.back().first + 1 != i)
      clear();
    bytes_ += chunk.size();
    chunks_.emplace_back(i, std::make_shared<const std::string>(std::move(chunk)));
    while (chunks_.size() > 1 && bytes_ > budget_) {
      bytes_ -= chunks_.front().second->size();
      chunks_.pop_front();
    }
  }
  // Chunk i, or null when it is not kept. A reader keeps its chunk alive
  // after keep() or clear() dropped it.
  std::shared_ptr<const std::string> get(uint64_t i) const {
    if (chunks_.empty() || i < chunks_.front().first || i - chunks_.front().first >= chunks_.size())
      return nullptr;
    return chunks_[static_cast<size_t>(i - chunks_.front().first)].second;
  }
  void clear() {
    chunks_.clear();
    bytes_ = 0;
  }
  size_t bytes() const { return bytes_; }

 private:
  size_t budget_;
  size_t bytes_ = 0;
  std::deque<std::pair<uint64_t, std::shared_ptr<const std::string>>> chunks_;
};

}  // namespace cm::push
