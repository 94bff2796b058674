// The serving Predictor's choice, call by call, between its team of threads and the calling thread alone.
#pragma once
#include <algorithm>

#include "afm/team_clock.hpp"

namespace afm {

// A Predictor's judgement, between calls, of whether its team beats the calling thread alone.
//
// A team call is judged by the cores it delivered (its threads' CPU seconds in their chunks over the call's wall
// time) and, once calls have run alone, by its rate (work units a second) against theirs. On idle cores a 2-thread
// team delivers nearly 2 cores. With another job on one core the thread sharing it runs part of the time and,
// worse, holds its chunk while descheduled, the other waiting at the region's end (a time slice, ~ms: most of an
// FM batch); with more jobs than cores the team's CPU seconds also buy less (bench/RESULTS.md): the rate shows it.
// The team is kept while, over a window of kWindow calls, it delivered kKeep x the cores of the last calls alone
// and kRateKeep x their rate (FwFM's team beside a busy core is about even with one thread: a rule of at least
// their rate sent it alone on noise). Else the next solo_len_ calls run on the calling thread alone, solo_len_ doubling (to
// kSoloMax) each time a probe (kProbe calls on the team after them) fails, back to kSoloStart when one succeeds;
// and at least so long that a probe as slow as the failed window costs under kProbeShare of the stretch (an FM
// team beside a busy core ran at 0.45x one thread: 40 calls alone, not 16); but a stretch ends after
// kMaxAloneSeconds of calls alone whatever its length: when another job's load ends (a build), the team is back
// within a second (with stretches of up to 1024 calls, a predictor beside intermittent builds ran alone 35% of
// its calls and kept 1.1-1.3x of the team's 1.7-1.8x).
// A predictor's first team call is not judged (it may start the OpenMP threads and touch fresh scratch). Any
// thread may run any chunk and every output element is written by one thread: the outputs do not depend on it.
class TeamJudge {
public:
    static constexpr double kKeep = 1.05, kRateKeep = 0.95;
    static constexpr int kProbe = 1, kWindow = 4, kSoloStart = 16, kSoloMax = 1024;
    static constexpr double kProbeShare = 0.03, kMaxAloneSeconds = 1.0;

    explicit TeamJudge(team::Mode force = team::mode_from_env()) : force_(force) {}

    bool team_next() const { return !solo_; }
    long long team_calls() const { return team_calls_; }
    long long solo_calls() const { return solo_calls_; }

    // After a call on the team: its wall seconds, its threads' CPU seconds in chunks (-1: unknown) and its work
    // in units of about equal cost (0: not known).
    void team_call(double wall, double work_cpu, double units) {
        if (team_calls_++ == 0 && force_ == team::Mode::adaptive) return;
        if (force_ == team::Mode::alternate) {
            solo_ = true;
            return;
        }
        if (force_ == team::Mode::team || work_cpu < 0.0) return;
        window_wall_ += wall;
        window_cpu_ += work_cpu;
        window_units_ += units;
        if (++window_n_ < (probing_ ? kProbe : kWindow)) return;
        const bool keep = window_cpu_ >= kKeep * solo_cores_ * window_wall_ &&
                          (solo_rate_ <= 0.0 || window_units_ <= 0.0 || window_units_ >= kRateKeep * solo_rate_ * window_wall_);
        // The calls alone the window's team calls cost over running alone (known once calls have run alone).
        const double lost = solo_rate_ > 0.0 && window_units_ > 0.0
                                ? window_n_ * (window_wall_ * solo_rate_ / window_units_ - 1.0)
                                : 0.0;
        window_n_ = 0;
        window_wall_ = window_cpu_ = window_units_ = 0.0;
        probing_ = false;
        if (keep) {
            solo_len_ = kSoloStart;
        } else {
            // Long enough that the next probe costs at most kProbeShare of the stretch, if it goes as this window.
            solo_len_ = std::max(solo_len_, static_cast<int>(std::min<double>(kSoloMax, lost / kProbeShare)));
            solo_ = true;
            solo_left_ = solo_len_;
            stretch_wall_ = stretch_units_ = 0.0;
            solo_len_ = std::min(2 * solo_len_, kSoloMax);
        }
    }

    // After a call that had the rows for a team but ran alone: its wall and CPU seconds (-1: unknown), its work.
    void solo_call(double wall, double cpu, double units) {
        ++solo_calls_;
        if (wall > 0.0 && cpu >= 0.0) solo_cores_ = std::min(1.0, cpu / wall);
        stretch_wall_ += wall;
        stretch_units_ += units;
        if (stretch_wall_ > 0.0 && units > 0.0) solo_rate_ = stretch_units_ / stretch_wall_;
        if (force_ == team::Mode::alternate || --solo_left_ <= 0 || stretch_wall_ >= kMaxAloneSeconds) solo_ = false;
        probing_ = !solo_;
    }

private:
    team::Mode force_;
    bool solo_ = false, probing_ = true;
    int solo_left_ = 0, solo_len_ = kSoloStart;
    int window_n_ = 0;
    long long team_calls_ = 0, solo_calls_ = 0;
    double window_wall_ = 0.0, window_cpu_ = 0.0, window_units_ = 0.0;
    double solo_cores_ = 1.0;                         // CPU seconds per wall second of the last call alone
    double stretch_wall_ = 0.0, stretch_units_ = 0.0;  // the current (or last) stretch of calls alone
    double solo_rate_ = 0.0;                          // its work units a second (0: none yet)
};

}  // namespace afm
