// The voting priority of claim 37, measured: an administrator's weight,
// free CPU, memory and disk, how long the host has been up (reliability),
// and how many servers it knows; 1..1000, in steps of 10 so that small
// changes of load do not reorder candidates.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace cm::elect {

struct Measures {
  double weight = 0.5;     // the administrator's factor, 0..1
  double cpu_free = 0;     // 1 - load / cores
  double mem_free = 0;     // MemAvailable / MemTotal
  double disk_free = 0;    // of the data directory
  double reliability = 0;  // uptime, a day counting as 1
  double known = 0;        // servers heard, 64 counting as 1
};

Measures measure(double weight, const std::string& data_dir, size_t servers_known);
uint32_t priority_of(const Measures& m);
nlohmann::json to_json(const Measures& m);

}  // namespace cm::elect
