#include "elect/priority.hpp"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace cm::elect {

namespace {
double clamp01(double v) {
  return std::clamp(std::isfinite(v) ? v : 0.0, 0.0, 1.0);
}

double meminfo_free() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double total = 0, avail = 0, v;
  std::string unit;
  while (in >> key >> v) {
    std::getline(in, unit);
    if (key == "MemTotal:")
      total = v;
    else if (key == "MemAvailable:")
      avail = v;
  }
  return total > 0 ? avail / total : 0;
}
}  // namespace

Measures measure(double weight, const std::string& data_dir, size_t servers_known) {
  Measures m;
  m.weight = clamp01(weight);
  double load[1] = {0};
  long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (::getloadavg(load, 1) == 1 && cores > 0)
    m.cpu_free = clamp01(1.0 - load[0] / static_cast<double>(cores));
  m.mem_free = clamp01(meminfo_free());
  struct statvfs sv;
  if (::statvfs(data_dir.empty() ? "/" : data_dir.c_str(), &sv) == 0 && sv.f_blocks > 0)
    m.disk_free = clamp01(static_cast<double>(sv.f_bavail) / static_cast<double>(sv.f_blocks));
  std::ifstream up("/proc/uptime");
  double seconds = 0;
  up >> seconds;
  m.reliability = clamp01(seconds / 86400.0);
  m.known = clamp01(static_cast<double>(servers_known) / 64.0);
  return m;
}

uint32_t priority_of(const Measures& m) {
  double score = 0.40 * m.weight + 0.15 * m.cpu_free + 0.15 * m.mem_free + 0.10 * m.disk_free +
                 0.10 * m.reliability + 0.10 * m.known;
  auto p = static_cast<uint32_t>(std::lround(clamp01(score) * 99.0)) * 10 + 10;
  return std::min<uint32_t>(p, 1000);
}

nlohmann::json to_json(const Measures& m) {
  return nlohmann::json{{"weight", m.weight},           {"cpu_free", m.cpu_free},
                        {"memory_free", m.mem_free},    {"disk_free", m.disk_free},
                        {"reliability", m.reliability}, {"servers_known", m.known}};
}

}  // namespace cm::elect
