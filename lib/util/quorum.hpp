// The quorum of a distribution, as every program takes it (cm-push send,
// cm-mcast send, cm-sched job add/set, cm-sched quorum): "N", a count of
// 1 or more, or "P%", a percentage above 0 up to 100 (decimals allowed:
// "66.7%") of those expected. One parser, so that the programs accept the
// same words and read them the same way.
#pragma once

#include <cstddef>
#include <string_view>

#include "util/result.hpp"

namespace cm {

struct Quorum {
  bool percent = true;
  double value = 100;  // the count, or the percentage

  // How many of n must succeed: a percentage rounded up; at least 1 and at
  // most n (n of 0 counts as 1: nothing can meet it).
  size_t of(size_t n) const;
  // More than n members, for a count: an error naming `what` ("leader(s)").
  Status check_count(size_t n, std::string_view what) const;
};

// Anything that is not a count or a percentage (0, 0%, 150%, 1e3, " 5",
// 5x, and "" or blanks too): a usage error that says which. A quorum that
// is not given at all means all (Quorum{}, 100%); each caller tells that
// apart from an empty one.
Result<Quorum> parse_quorum(std::string_view text);
// Empty, or blanks only: a quorum given without one in it.
bool quorum_blank(std::string_view text);

}  // namespace cm
