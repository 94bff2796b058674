// A fast, strict reader of libFM / libSVM (svmlight) text files into CSR arrays.
//
// Format accepted (one row per line):
//     label id:value id:value ...      # optional comment
//   * separators: any run of spaces and/or tabs; lines end with LF or CRLF; a missing final newline is fine;
//   * '#' starts a comment that runs to the end of the line (also straight after a token: "3:1#c");
//   * lines that are empty or hold only blanks and/or a comment are skipped (no row), as sklearn's
//     load_svmlight_file does; a line with only a label is a row with zero features;
//   * label: a finite decimal float ("1", "+1", "-1", "0", "1.0", "3.5e-1");
//   * id: a non-negative base-10 integer (digits only) that fits int32 (<= 2147483647); ids are kept in line
//     order, neither sorted nor merged (duplicates stay separate non-zeros);
//   * value: a finite decimal float, kept even when it is 0.
//   Numbers are read as double (correctly rounded) and then rounded to float32 -- the same result as
//   float(s) in Python followed by astype(float32); magnitudes below the float32 range become 0 (or
//   subnormals), magnitudes beyond it are an error.
//
// Rejected, with the 1-based line number and a precise message: a label or value that is not a number
// (also hex, '1e', '1,2', trailing junk), NaN/inf, a number out of float32 range, a token without ':',
// an empty id (":1") or value ("3:"), a negative id, an id beyond int32, junk in an id ("3x:1", "+3:1"),
// "qid:" tokens (not supported), NUL bytes anywhere (comments included), a CR not followed by LF (it is
// part of a token then), a UTF-8 byte-order mark.
//
// libFFM (the libffm / xLearn format) is the same grammar with feature tokens "field:id:value": field is a
// non-negative base-10 integer below 65,536 (digits only), kept per non-zero in `fields`. A token of another
// shape ("3:1", "0:3:1:2") is rejected with the line.
//
// Error contract: the functions never throw (out of memory is reported as an error too) and never read
// outside [data, data + size). On failure they return false, leave `out` empty, and fill `err`:
// err.line is the 1-based line of the first error (0 when the file cannot be read, with the OS error in
// err.message); err.message quotes the offending token (escaped, truncated to a few dozen bytes).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace afm {

struct LibfmData {
    std::vector<int64_t> indptr;   // n_rows + 1, starts at 0
    std::vector<int32_t> indices;  // feature ids, in line order (not sorted, duplicates kept)
    std::vector<float> values;
    std::vector<float> labels;     // n_rows
    int64_t max_feature_id = -1;   // -1 when no feature at all
    std::vector<int32_t> fields;   // libFFM only: the field of each non-zero (empty for libFM)
    int64_t max_field_id = -1;     // libFFM only
};

enum class TextFormat { libfm, libffm };

constexpr int64_t kMaxFieldId = 65535;

struct ParseError {
    int64_t line = 0;  // 1-based; 0 when the error is not tied to a line (e.g. an unreadable file)
    std::string message;
};

// Parse a whole in-memory buffer. Returns true on success; on failure fills err and returns false.
bool parse_libfm(const char* data, size_t size, LibfmData& out, ParseError& err,
                 TextFormat format = TextFormat::libfm);

// Read a file in one go and parse it; an unreadable file gives line 0 and a message naming the OS error. Only
// regular files and pipes are read: anything else (a character device such as /dev/zero, a block device, a
// socket, a directory) is refused with line 0 and a message naming its kind, before any byte is read.
bool parse_libfm_file(const std::string& path, LibfmData& out, ParseError& err,
                      TextFormat format = TextFormat::libfm);

}  // namespace afm
