// What a team of threads needs to judge whether its cores are its own: each thread's CPU clock, and the
// FASTAFM_TEAM_MODE override of the adaptive choice between the team and one thread (tests, measurements).
#pragma once
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace afm::team {

// This thread's CPU seconds (CLOCK_THREAD_CPUTIME_ID; -1 where the system cannot say).
inline double thread_cpu_seconds() {
#if defined(__linux__)
    timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) return static_cast<double>(ts.tv_sec) + 1e-9 * ts.tv_nsec;
#endif
    return -1.0;
}

// FASTAFM_TEAM_MODE: "alternate" switches between the team and one thread at every step (tests: the results must
// not change), "team" never leaves the team (measurements); unset or anything else: adaptive.
enum class Mode { adaptive = 0, alternate = 1, team = 2 };

inline Mode mode_from_env() {
    const char* v = std::getenv("FASTAFM_TEAM_MODE");
    if (!v) return Mode::adaptive;
    if (std::strcmp(v, "alternate") == 0) return Mode::alternate;
    if (std::strcmp(v, "team") == 0) return Mode::team;
    return Mode::adaptive;
}

}  // namespace afm::team
