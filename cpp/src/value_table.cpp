// The raw-log string kernels: see afm/value_table.hpp.
#include "afm/value_table.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "afm/common.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define AFM_HAVE_MMAP 1
#endif

namespace afm {

void* map_pages(size_t bytes) {
#ifdef AFM_HAVE_MMAP
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return p;
#else
    return ::operator new(bytes);
#endif
}

void unmap_pages(void* p, size_t bytes) {
#ifdef AFM_HAVE_MMAP
    munmap(p, bytes);
#else
    (void)bytes;
    ::operator delete(p);
#endif
}

template <class Offset>
void fnv1a64_strings(const StringsView<Offset>& s, uint64_t* out) {
    for (int64_t i = 0; i < s.n; ++i) {
        if (!s.valid(i)) {
            out[i] = 0;
            continue;
        }
        const int64_t lo = static_cast<int64_t>(s.offsets[i]);
        out[i] = fnv1a64(s.data + lo, static_cast<size_t>(static_cast<int64_t>(s.offsets[i + 1]) - lo));
    }
}

template void fnv1a64_strings<int32_t>(const StringsView<int32_t>&, uint64_t*);
template void fnv1a64_strings<int64_t>(const StringsView<int64_t>&, uint64_t*);

namespace {
// FNV-1a's low bits mix poorly for short keys: fold the high half in to pick the slot.
inline uint64_t slot_of(uint64_t h, uint64_t mask) { return (h ^ (h >> 29) ^ (h >> 47)) & mask; }

inline uint32_t tag_of(uint64_t h, size_t n) {
    return (static_cast<uint32_t>(h >> 40) << 8) | static_cast<uint32_t>(n < 255 ? n : 255);
}

inline uint64_t head_of(const uint8_t* p, size_t n) {
    uint64_t head = 0;
    std::memcpy(&head, p, n < 8 ? n : 8);
    return head;
}

constexpr int kAhead = 8;  // lookups hashed and prefetched ahead of the one probed
}  // namespace

ValueTable::ValueTable() : slots_(1024, Slot{0, 0, -1}), mask_(1023), offsets_(1, 0) {}

size_t ValueTable::memory_bytes() const {
    return slots_.capacity() * sizeof(Slot) + offsets_.capacity() * sizeof(int64_t) + bytes_.capacity() +
           counts_.capacity() * sizeof(int64_t);
}

void ValueTable::grow() {
    const size_t cap = slots_.size() * 2;
    slots_ = PagedVector<Slot>();  // freed before the larger array is filled
    PagedVector<Slot> slots(cap, Slot{0, 0, -1});
    const uint64_t mask = cap - 1;
    const int64_t n = size();
    for (int64_t id = 0; id < n; ++id) {  // rehashed from the bytes, in id order
        const uint8_t* p = bytes_.data() + offsets_[id];
        const size_t len = static_cast<size_t>(offsets_[id + 1] - offsets_[id]);
        uint64_t h = fnv1a64(p, len);
        if (h == 0) h = 1;
        uint64_t at = slot_of(h, mask);
        while (slots[at].id >= 0) at = (at + 1) & mask;
        slots[at] = Slot{head_of(p, len), tag_of(h, len), static_cast<int32_t>(id)};
    }
    slots_.swap(slots);
    mask_ = mask;
}

int32_t ValueTable::find_or_insert(const uint8_t* p, size_t n, uint64_t h, bool insert) {
    if (h == 0) h = 1;
    const uint64_t head = head_of(p, n);
    const uint32_t tag = tag_of(h, n);
    uint64_t at = slot_of(h, mask_);
    while (true) {
        const Slot& s = slots_[at];
        if (s.id < 0) break;
        if (s.tag == tag && s.head == head &&
            (n <= 8 || ((n < 255 || static_cast<size_t>(offsets_[s.id + 1] - offsets_[s.id]) == n) &&
                        std::memcmp(bytes_.data() + offsets_[s.id] + 8, p + 8, n - 8) == 0))) {
            if (insert) ++counts_[s.id];
            return s.id;
        }
        at = (at + 1) & mask_;
    }
    if (!insert) return -1;
    if (counts_.size() >= static_cast<size_t>(INT32_MAX) || n > UINT32_MAX)
        throw std::length_error("more than 2^31 - 1 distinct values in one column, or a value of 4 GiB");
    const int32_t id = static_cast<int32_t>(counts_.size());
    slots_[at] = Slot{head, tag, id};
    bytes_.insert(bytes_.end(), p, p + n);
    offsets_.push_back(static_cast<int64_t>(bytes_.size()));
    counts_.push_back(1);
    if (counts_.size() * 10 > slots_.size() * 7) grow();  // load factor at most 0.7
    return id;
}

// key(i, &p, &n) -> whether value i is present (its bytes p[0, n)). Hashes are computed kAhead values ahead
// and their slots prefetched: the table is far larger than the caches, and its misses dominate otherwise.
template <class Key>
void ValueTable::add_all(int64_t n, const Key& key, int32_t* ids, bool insert) {
    uint64_t ring[kAhead];
    auto hash_at = [&](int64_t i) -> uint64_t {
        const uint8_t* p;
        size_t len;
        if (!key(i, &p, &len)) return 0;
        uint64_t h = fnv1a64(p, len);
        if (h == 0) h = 1;
        __builtin_prefetch(&slots_[slot_of(h, mask_)]);
        return h;
    };
    for (int64_t i = 0; i < n && i < kAhead; ++i) ring[i] = hash_at(i);
    for (int64_t i = 0; i < n; ++i) {
        const uint64_t h = ring[i % kAhead];
        if (i + kAhead < n) ring[(i + kAhead) % kAhead] = hash_at(i + kAhead);
        const uint8_t* p;
        size_t len;
        ids[i] = key(i, &p, &len) ? find_or_insert(p, len, h, insert) : -1;
    }
}

template <class Offset>
void ValueTable::add(const StringsView<Offset>& s, int32_t* ids, bool insert) {
    add_all(
        s.n,
        [&s](int64_t i, const uint8_t** p, size_t* len) {
            if (!s.valid(i)) return false;
            const int64_t lo = static_cast<int64_t>(s.offsets[i]);
            *p = s.data + lo;
            *len = static_cast<size_t>(static_cast<int64_t>(s.offsets[i + 1]) - lo);
            return true;
        },
        ids, insert);
}

template void ValueTable::add<int32_t>(const StringsView<int32_t>&, int32_t*, bool);
template void ValueTable::add<int64_t>(const StringsView<int64_t>&, int32_t*, bool);

void ValueTable::add_keys(const uint64_t* keys, const uint8_t* skip, int64_t n, int32_t* ids, bool insert) {
    add_all(
        n,
        [keys, skip](int64_t i, const uint8_t** p, size_t* len) {
            if (skip != nullptr && skip[i]) return false;
            *p = reinterpret_cast<const uint8_t*>(&keys[i]);
            *len = 8;
            return true;
        },
        ids, insert);
}

void add_columns(ColumnAdd* jobs, int64_t n_jobs, int n_threads) {
    if (n_jobs <= 0) return;
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(resolve_threads(n_threads), n_jobs));
    std::atomic<int64_t> next{0};
    std::mutex error_lock;
    std::exception_ptr error = nullptr;
    auto work = [&]() {
        for (int64_t k = next.fetch_add(1); k < n_jobs; k = next.fetch_add(1)) {
            ColumnAdd& job = jobs[n_jobs - 1 - k];
            try {
                if (job.is_wide)
                    job.table->add(job.wide, job.ids, true);
                else
                    job.table->add(job.narrow, job.ids, true);
            } catch (...) {
                std::lock_guard<std::mutex> guard(error_lock);
                if (!error) error = std::current_exception();
            }
        }
    };
    // Plain threads, not an OpenMP team: a team's threads spin after the region (GOMP_SPINCOUNT), and here they
    // would spin against pyarrow's parser threads between batches (measured: 0.5 CPU s more on 103 MB).
    std::vector<std::thread> helpers;
    helpers.reserve(static_cast<size_t>(nt - 1));
    for (int64_t t = 1; t < nt; ++t) helpers.emplace_back(work);
    work();
    for (std::thread& t : helpers) t.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace afm
