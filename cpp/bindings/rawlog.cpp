// The raw-log string kernels from Python (afm/value_table.hpp): FNV-1a 64 of a string column and ValueTable,
// the distinct values of a column with their counts. A string column comes as Arrow's buffers viewed by NumPy
// (offsets int32 or int64, the data bytes, the validity bitmap or None and its bit offset); the offsets and
// the bitmap's length are checked here before the GIL is released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "afm/value_table.hpp"
#include "arrays.hpp"
#include "bindings.hpp"

namespace afm::binding {

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

// The view of a string column; `keep` holds the arrays it points into for the call.
template <class Offset>
afm::StringsView<Offset> strings_view(const py::array& offsets, const py::array& data, const py::object& validity,
                                      int64_t bit_offset) {
    const Offset* off = checked<Offset>(offsets, "offsets", {-1});
    const int64_t n = static_cast<int64_t>(offsets.shape(0)) - 1;
    if (n < 0) throw py::value_error("offsets must hold n + 1 >= 1 entries");
    const uint8_t* bytes = checked<uint8_t>(data, "data", {-1});
    const int64_t size = static_cast<int64_t>(data.shape(0));
    for (int64_t i = 0; i < n; ++i)
        if (off[i] < 0 || off[i] > off[i + 1])
            throw py::value_error("offsets must be non-negative and non-decreasing (at " + std::to_string(i) + ")");
    if (n > 0 && static_cast<int64_t>(off[n]) > size)
        throw py::value_error("offsets point past the end of data (" + std::to_string(static_cast<int64_t>(off[n])) +
                              " > " + std::to_string(size) + ")");
    const uint8_t* bits = nullptr;
    if (!validity.is_none()) {
        if (bit_offset < 0) throw py::value_error("bit_offset must be >= 0");
        const py::array v = validity.cast<py::array>();
        bits = checked<uint8_t>(v, "validity", {-1});
        if (static_cast<int64_t>(v.shape(0)) * 8 < bit_offset + n)
            throw py::value_error("validity holds fewer bits than bit_offset + n");
    }
    return {off, bytes, bits, bit_offset, n};
}

bool wide_offsets(const py::array& offsets) {
    if (py::isinstance<py::array_t<int64_t>>(offsets)) return true;
    if (py::isinstance<py::array_t<int32_t>>(offsets)) return false;
    throw py::type_error("offsets must have dtype int32 or int64, got " + std::string(py::str(offsets.dtype())));
}

// Calls f(view) on the string column's view of its offsets' width (int32 or int64), with the GIL released.
template <class F>
void on_strings(const py::array& offsets, const py::array& data, const py::object& validity, int64_t bit_offset,
                F&& f) {
    if (wide_offsets(offsets)) {
        auto s = strings_view<int64_t>(offsets, data, validity, bit_offset);
        py::gil_scoped_release nogil;
        f(s);
    } else {
        auto s = strings_view<int32_t>(offsets, data, validity, bit_offset);
        py::gil_scoped_release nogil;
        f(s);
    }
}

// A ValueTable used from Python: one call at a time (the GIL is released while it works).
struct PyValueTable {
    afm::ValueTable table;
    std::mutex lock;
};

}  // namespace

void bind_rawlog(py::module_& mod) {
    mod.def(
        "fnv1a64_strings",
        [](const py::array& offsets, const py::array& data, const py::object& validity, int64_t bit_offset) {
            const int64_t n = static_cast<int64_t>(offsets.shape(0)) - 1;
            py::array_t<uint64_t> out(std::max<int64_t>(n, 0));
            uint64_t* o = out.mutable_data();
            on_strings(offsets, data, validity, bit_offset, [&](const auto& s) { afm::fnv1a64_strings(s, o); });
            return out;
        },
        "offsets"_a, "data"_a, "validity"_a = py::none(), "bit_offset"_a = 0,
        "FNV-1a 64 of every value of a string column given as Arrow's buffers (offsets int32/int64 of n + 1\n"
        "entries, data uint8, the validity bitmap uint8 or None and its bit offset); 0 for a missing value.");

    py::class_<PyValueTable>(mod, "ValueTable",
                             "The distinct values of a column (byte strings, or float64 values by their bits) with\n"
                             "the count of each, numbered in first-seen order.")
        .def(py::init<>())
        .def(
            "add",
            [](PyValueTable& self, const py::array& offsets, const py::array& data, const py::object& validity,
               int64_t bit_offset, bool insert) {
                const int64_t n = static_cast<int64_t>(offsets.shape(0)) - 1;
                py::array_t<int32_t> ids(std::max<int64_t>(n, 0));
                int32_t* out = ids.mutable_data();
                on_strings(offsets, data, validity, bit_offset, [&](const auto& s) {
                    std::lock_guard<std::mutex> guard(self.lock);
                    self.table.add(s, out, insert);
                });
                return ids;
            },
            "offsets"_a, "data"_a, "validity"_a = py::none(), "bit_offset"_a = 0, "insert"_a = true,
            "The id (int32) of every value of a string column (Arrow's buffers, as fnv1a64_strings takes them),\n"
            "-1 for a missing value. insert=True numbers unseen values and counts every present one; insert=False\n"
            "only looks up (-1 for an unseen value).")
        .def(
            "add_keys",
            [](PyValueTable& self, const py::array& keys, const py::object& skip, bool insert) {
                const uint64_t* k = checked<uint64_t>(keys, "keys", {-1});
                const int64_t n = static_cast<int64_t>(keys.shape(0));
                const uint8_t* s = nullptr;
                py::array skip_arr;
                if (!skip.is_none()) {
                    skip_arr = skip.cast<py::array>();
                    s = checked<uint8_t>(skip_arr, "skip", {n});
                }
                py::array_t<int32_t> ids(n);
                int32_t* out = ids.mutable_data();
                py::gil_scoped_release nogil;
                std::lock_guard<std::mutex> guard(self.lock);
                self.table.add_keys(k, s, n, out, insert);
                return ids;
            },
            "keys"_a, "skip"_a = py::none(), "insert"_a = true,
            "The id (int32) of every 8-byte key (uint64: float64 values viewed as their bits), -1 where skip\n"
            "(uint8, or None) is non-zero; insert as in add. A key is the value of bytes() of 8 bytes.")
        .def("__len__", [](PyValueTable& self) { return self.table.size(); })
        .def_static(
            "add_columns",
            [](const py::list& tables, const py::list& columns, int n_threads) {
                const size_t n = tables.size();
                if (columns.size() != n)
                    throw py::value_error("add_columns needs one column per table (" + std::to_string(n) +
                                          " tables, " + std::to_string(columns.size()) + " columns)");
                if (n_threads < 0) throw py::value_error("n_threads must be >= 0 (0: all cores)");
                std::vector<PyValueTable*> owners(n);
                std::vector<afm::ColumnAdd> jobs(n);
                py::list out;
                for (size_t j = 0; j < n; ++j) {
                    owners[j] = tables[j].cast<PyValueTable*>();
                    const py::tuple col = columns[j].cast<py::tuple>();
                    if (col.size() != 4)
                        throw py::value_error("add_columns: column " + std::to_string(j) +
                                              " must be (offsets, data, validity, bit_offset)");
                    const py::array offsets = col[0].cast<py::array>();
                    const py::array data = col[1].cast<py::array>();
                    const int64_t bit_offset = col[3].cast<int64_t>();
                    afm::ColumnAdd& job = jobs[j];
                    job.table = &owners[j]->table;
                    job.is_wide = wide_offsets(offsets);
                    const int64_t rows = std::max<int64_t>(static_cast<int64_t>(offsets.shape(0)) - 1, 0);
                    if (job.is_wide)
                        job.wide = strings_view<int64_t>(offsets, data, col[2], bit_offset);
                    else
                        job.narrow = strings_view<int32_t>(offsets, data, col[2], bit_offset);
                    py::array_t<int32_t> ids(rows);
                    job.ids = ids.mutable_data();
                    out.append(ids);
                }
                std::vector<PyValueTable*> sorted(owners);
                std::sort(sorted.begin(), sorted.end());
                if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
                    throw py::value_error("add_columns: a table is given twice (each column needs its own table)");
                {
                    py::gil_scoped_release nogil;
                    std::vector<std::unique_lock<std::mutex>> held;
                    held.reserve(n);
                    for (PyValueTable* t : sorted) held.emplace_back(t->lock);  // in address order: no deadlock
                    afm::add_columns(jobs.data(), static_cast<int64_t>(n), n_threads);
                }
                return out;
            },
            "tables"_a, "columns"_a, "n_threads"_a = 0,
            "add(*columns[j]) of every tables[j] (insert=True) in one call, the columns on up to n_threads threads\n"
            "(0: all cores): a list of the int32 ids of each column. columns[j] is (offsets, data, validity or None,\n"
            "bit_offset), as add takes them; the tables must be distinct.")
        .def(
            "counts",
            [](PyValueTable& self) {
                const auto& c = self.table.counts();
                py::array_t<int64_t> out(static_cast<py::ssize_t>(c.size()));
                std::copy(c.begin(), c.end(), out.mutable_data());
                return out;
            },
            "How many times each value was added (int64, by id).")
        .def(
            "values",
            [](PyValueTable& self) {
                const auto& o = self.table.offsets();
                const auto& b = self.table.bytes();
                py::array_t<int64_t> offsets(static_cast<py::ssize_t>(o.size()));
                std::copy(o.begin(), o.end(), offsets.mutable_data());
                py::array_t<uint8_t> bytes(static_cast<py::ssize_t>(b.size()));
                std::copy(b.begin(), b.end(), bytes.mutable_data());
                return py::make_tuple(offsets, bytes);
            },
            "(offsets int64 of len + 1 entries, bytes uint8): the values by id, as Arrow's large_string buffers.")
        .def("memory_bytes", [](PyValueTable& self) { return self.table.memory_bytes(); },
             "The bytes the table holds (its slots, values and counts).");
}

}  // namespace afm::binding
