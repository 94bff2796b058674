// The libFM/libSVM parser from Python: a file by path, or a buffer of whole lines; parsed without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "afm/libfm.hpp"
#include "bindings.hpp"

namespace afm::binding {

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

afm::TextFormat text_format(const std::string& name) {
    if (name == "libfm") return afm::TextFormat::libfm;
    if (name == "libffm") return afm::TextFormat::libffm;
    throw py::value_error("format must be 'libfm' or 'libffm', got '" + name + "'");
}

// (indptr, indices, values, labels, max_feature_id) of a parsed libFM text, as NumPy arrays; libFFM adds
// (fields, max_field_id).
py::tuple libfm_tuple(const afm::LibfmData& data, afm::TextFormat format) {
    auto arr = [](const auto& v) {
        using T = typename std::decay_t<decltype(v)>::value_type;
        py::array_t<T> out(static_cast<py::ssize_t>(v.size()));
        std::copy(v.begin(), v.end(), out.mutable_data());
        return out;
    };
    if (format == afm::TextFormat::libffm)
        return py::make_tuple(arr(data.indptr), arr(data.indices), arr(data.values), arr(data.labels),
                              data.max_feature_id, arr(data.fields), data.max_field_id);
    return py::make_tuple(arr(data.indptr), arr(data.indices), arr(data.values), arr(data.labels),
                          data.max_feature_id);
}

}  // namespace

void bind_libfm(py::module_& mod) {
    mod.def(
        "parse_libfm_file",
        [](const std::string& path, const std::string& format_name) {
            const afm::TextFormat format = text_format(format_name);
            afm::LibfmData data;
            afm::ParseError err;
            bool ok;
            {
                py::gil_scoped_release nogil;
                ok = afm::parse_libfm_file(path, data, err, format);
            }
            if (!ok) {
                if (err.line > 0) throw py::value_error(path + ":" + std::to_string(err.line) + ": " + err.message);
                throw py::value_error(path + ": " + err.message);
            }
            return libfm_tuple(data, format);
        },
        "path"_a, "format"_a = "libfm",
        "Parse a libFM/libSVM file (format='libfm') or a libFFM file (format='libffm'). Returns (indptr int64,\n"
        "indices int32, values float32, labels float32, max_feature_id), and for libFFM also (fields int32 per\n"
        "non-zero, max_field_id); raises ValueError 'path:line: message' on a malformed line.");

    mod.def(
        "parse_libfm_buffer",
        [](const py::buffer& buffer, const std::string& name, int64_t first_line, const std::string& format_name) {
            const afm::TextFormat format = text_format(format_name);
            if (first_line < 1) throw py::value_error("first_line must be >= 1");
            py::buffer_info info = buffer.request();
            if (info.ndim != 1 || info.itemsize != 1 || info.strides[0] != 1)
                throw py::value_error("buffer must be a contiguous 1-D buffer of bytes");
            afm::LibfmData data;
            afm::ParseError err;
            bool ok;
            {
                py::gil_scoped_release nogil;
                ok = afm::parse_libfm(static_cast<const char*>(info.ptr), static_cast<size_t>(info.size), data, err,
                                     format);
            }
            if (!ok) {
                if (err.line > 0)
                    throw py::value_error(name + ":" + std::to_string(first_line + err.line - 1) + ": " + err.message);
                throw py::value_error(name + ": " + err.message);
            }
            return libfm_tuple(data, format);
        },
        "buffer"_a, "name"_a, "first_line"_a = 1, "format"_a = "libfm",
        "Parse libFM/libSVM text held in a bytes-like buffer (a chunk of whole lines of a file). Returns what\n"
        "parse_libfm_file returns; a malformed line raises ValueError 'name:line: message', the line counted\n"
        "from `first_line` (the file line the buffer starts at).");
}

}  // namespace afm::binding
