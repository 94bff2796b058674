// The raw-log pipeline's string kernels (python/fastafm/rawlog, docs/data.md): the FNV-1a 64 hash of byte
// strings (the documented hash of hash_buckets, bit for bit python/fastafm/rawlog/hashing.py's), and a table
// of the distinct values of one column with the count of each, ids given in first-seen order. The statistics
// pass adds every batch of a column to its table and spills the ids; once the vocabulary is known the ids are
// mapped to the final ones, so the text is parsed once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace afm {

// The tables' growing arrays are allocated with their own pages from 1 MiB up (mmap): freed on growth, they go
// back to the system at once. From malloc they would stay in the heap (glibc raises its mmap threshold after
// the first large free), about the tables' own size of dead memory in the process's peak RSS.
void* map_pages(size_t bytes);
void unmap_pages(void* p, size_t bytes);

template <class T>
struct PageAllocator {
    using value_type = T;
    static constexpr size_t kPages = size_t(1) << 20;
    PageAllocator() = default;
    template <class U>
    PageAllocator(const PageAllocator<U>&) {}
    T* allocate(size_t n) {
        const size_t bytes = n * sizeof(T);
        void* p = bytes >= kPages ? map_pages(bytes) : ::operator new(bytes);
        return static_cast<T*>(p);
    }
    void deallocate(T* p, size_t n) {
        const size_t bytes = n * sizeof(T);
        if (bytes >= kPages)
            unmap_pages(p, bytes);
        else
            ::operator delete(p);
    }
    template <class U>
    bool operator==(const PageAllocator<U>&) const { return true; }
    template <class U>
    bool operator!=(const PageAllocator<U>&) const { return false; }
};

template <class T>
using PagedVector = std::vector<T, PageAllocator<T>>;

inline uint64_t fnv1a64(const uint8_t* p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

// Arrow's layout of a string array: value i is data[offsets[i], offsets[i+1]); it is missing when `validity`
// is not null and bit (bit_offset + i) of it is 0.
template <class Offset>
struct StringsView {
    const Offset* offsets;
    const uint8_t* data;
    const uint8_t* validity;
    int64_t bit_offset;
    int64_t n;

    bool valid(int64_t i) const {
        if (validity == nullptr) return true;
        const int64_t b = bit_offset + i;
        return (validity[b >> 3] >> (b & 7)) & 1;
    }
};

// FNV-1a 64 of every value into out (0 for missing values).
template <class Offset>
void fnv1a64_strings(const StringsView<Offset>& s, uint64_t* out);

// The distinct byte strings of a column and their counts, in first-seen order (open addressing, linear
// probing on the FNV-1a hash; a slot matches only if the bytes are equal, so collisions never merge values).
class ValueTable {
public:
    ValueTable();
    // ids[i] = the id of value i (-1 when missing); with insert, unseen values get the next ids and every
    // present value is counted; without, an unseen value's id is -1 and nothing is counted.
    template <class Offset>
    void add(const StringsView<Offset>& s, int32_t* ids, bool insert);
    // The same for 8-byte keys (float64 values by their bits: -0.0 and 0.0 are two keys); skip[i] != 0 marks
    // a missing value (id -1).
    void add_keys(const uint64_t* keys, const uint8_t* skip, int64_t n, int32_t* ids, bool insert);

    int64_t size() const { return static_cast<int64_t>(counts_.size()); }
    const PagedVector<int64_t>& counts() const { return counts_; }
    const PagedVector<int64_t>& offsets() const { return offsets_; }  // size()+1 offsets into bytes()
    const PagedVector<uint8_t>& bytes() const { return bytes_; }
    size_t memory_bytes() const;

private:
    // One slot (16 bytes, four to a cache line): a value's first 8 bytes, a tag (24 bits of its hash and its
    // length up to 255) and its id (-1: empty), so that a value of up to 8 bytes (Criteo's ids) is matched from
    // the slot alone. The slot index is not kept: growing rehashes the values from their bytes.
    struct Slot {
        uint64_t head;
        uint32_t tag;
        int32_t id;
    };
    int32_t find_or_insert(const uint8_t* p, size_t n, uint64_t h, bool insert);
    void grow();
    template <class Key>
    void add_all(int64_t n, const Key& key, int32_t* ids, bool insert);

    PagedVector<Slot> slots_;
    uint64_t mask_ = 0;
    PagedVector<int64_t> offsets_;
    PagedVector<uint8_t> bytes_;
    PagedVector<int64_t> counts_;
};

// One column of a batch added to its own table (add_columns): a string column with int32 or int64 offsets.
struct ColumnAdd {
    ValueTable* table;
    StringsView<int32_t> narrow;
    StringsView<int64_t> wide;
    bool is_wide;
    int32_t* ids;  // n values of the column
};

// Every job's column added to its table (insert), the jobs on up to n_threads threads (0: all cores), the
// last jobs first (a batch's widest vocabularies are its last columns). The tables must be distinct: each is
// one thread's at a time. The first error (a table past 2^31 - 1 values) is rethrown after the loop.
void add_columns(ColumnAdd* jobs, int64_t n_jobs, int n_threads);

}  // namespace afm
