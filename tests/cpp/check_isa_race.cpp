// The ISA choice under concurrency, for ThreadSanitizer: threads switching the active kernel set with
// select_isa while others read it (kernels(), kernels_for(), active_isa()), as Python threads may while the
// GIL is released. The choice must be published without a data race, and every read must give a whole set.
//
// Built by tests/test_core_boundary.py with -fsanitize=thread, the ISA dispatch and the kernel sets this
// compiler builds (with AFM_HAVE_ISA_CLONES where the CPU has them); a TSan report fails the run. Prints
// "isa race: N reads, M bad".
#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "afm/block_kernels.hpp"

using namespace afm;

int main() {
    const std::vector<std::string> isas = supported_isas();
    std::atomic<bool> stop{false};
    std::atomic<long> reads{0}, bad{0};
    std::vector<std::thread> threads;
    threads.emplace_back([&] {
        // the readers first: on a loaded machine this thread could otherwise finish before they start (0 reads)
        while (reads.load() == 0) std::this_thread::yield();
        for (int i = 0; i < 20000; ++i) select_isa(isas[i % isas.size()]);
        stop = true;
    });
    for (int r = 0; r < 2; ++r)
        threads.emplace_back([&] {
            while (!stop) {
                const IsaKernels& a = kernels();
                const IsaKernels& b = kernels_for(64, 64);
                const std::string name = active_isa();
                bool a_known = false, name_known = false;
                for (const std::string& n : isas) {
                    a_known = a_known || n == a.name;
                    name_known = name_known || n == name;
                }
                if (!a_known || !name_known || !a.forward || !b.forward) ++bad;
                ++reads;
            }
        });
    for (std::thread& t : threads) t.join();
    std::printf("isa race: %ld reads, %ld bad\n", reads.load(), bad.load());
    return bad.load() == 0 && reads.load() > 0 ? 0 : 1;
}
