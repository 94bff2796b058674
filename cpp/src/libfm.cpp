// libFM / libSVM text reader (see afm/libfm.hpp for the format and the error contract).
//
// Speed: the file is read with fread into one buffer (not mmap: a file truncated while mapped would kill
// the process with SIGBUS), one vectorisable pass counts ':' and '\n' to reserve the outputs exactly (no
// reallocation, no per-token allocation), lines are cut with memchr, ids are parsed by hand, and numbers take
// an exact fast path for plain decimals ("-0.25", "17") or else std::from_chars (exponents, long mantissas).
// Error messages are only built on the (cold) error path.
#include "afm/libfm.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <system_error>
#include <tuple>

#include <sys/stat.h>

namespace afm {
namespace {

constexpr int64_t kMaxId = std::numeric_limits<int32_t>::max();
constexpr size_t kMaxShown = 40;  // bytes of a token quoted in a message
// Smallest double that rounds to +inf as float32: FLT_MAX + half an ulp (the tie rounds to even = inf).
constexpr double kFloatOverflow = 0x1.ffffffp127;

inline bool is_digit(char c) { return static_cast<unsigned char>(c - '0') < 10; }
inline bool is_blank(char c) { return c == ' ' || c == '\t'; }

// 'token' quoted, with control and non-ASCII bytes escaped, truncated after kMaxShown bytes.
std::string show(const char* b, const char* e) {
    static const char hex[] = "0123456789abcdef";
    std::string s = "'";
    const size_t n = static_cast<size_t>(e - b);
    const size_t shown = std::min(n, kMaxShown);
    for (size_t i = 0; i < shown; ++i) {
        const unsigned char c = static_cast<unsigned char>(b[i]);
        if (c == '\r') {
            s += "\\r";
        } else if (c == '\t') {
            s += "\\t";
        } else if (c < 0x20 || c >= 0x7f || c == '\\' || c == '\'') {
            if (c == '\\' || c == '\'') {
                s += '\\';
                s += static_cast<char>(c);
            } else {
                s += "\\x";
                s += hex[c >> 4];
                s += hex[c & 15];
            }
        } else {
            s += static_cast<char>(c);
        }
    }
    s += '\'';
    if (shown < n) s += "... (" + std::to_string(n) + " bytes)";
    return s;
}

enum class Real { ok, not_number, not_finite, out_of_range };

// Decimal order of magnitude of a syntactically valid decimal float [b, e) that from_chars reported out of
// range: > 0 means overflow, <= 0 underflow. Saturating, so huge exponents cannot overflow.
bool overflows(const char* b, const char* e) {
    const char* q = b;
    if (q < e && (*q == '-' || *q == '+')) ++q;
    int64_t mag = 0;
    bool nonzero = false;
    for (; q < e && is_digit(*q); ++q) {
        if (nonzero) {
            if (mag < (int64_t(1) << 40)) ++mag;
        } else if (*q != '0') {
            nonzero = true;
            mag = 1;
        }
    }
    if (q < e && *q == '.') {
        for (++q; q < e && is_digit(*q); ++q) {
            if (!nonzero) {
                if (*q != '0') nonzero = true;
                else if (mag > -(int64_t(1) << 40)) --mag;
            }
        }
    }
    int64_t ex = 0;
    bool neg = false;
    if (q < e && (*q == 'e' || *q == 'E')) {
        ++q;
        if (q < e && (*q == '+' || *q == '-')) neg = *q++ == '-';
        for (; q < e && is_digit(*q); ++q)
            if (ex < (int64_t(1) << 40)) ex = ex * 10 + (*q - '0');
    }
    return mag + (neg ? -ex : ex) > 0;
}

const char* token_end(const char* q, const char* e) {
    while (q < e && !is_blank(*q)) ++q;
    return q;
}

// Exact powers of ten: 10^k is exactly representable in double for k <= 22.
constexpr double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                             1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

// Parse the token that starts at b (a non-blank byte before e, the end of the line's content) as a finite
// decimal float rounded to float32; tok_end receives the end of the token (the next blank or e).
Real parse_real(const char* b, const char* e, float& out, const char*& tok_end) {
    // Fast path (Clinger): [+-]digits[.digits] with a mantissa m <= 2^53 and at most 22 decimals is
    // m / 10^k with both operands exact, so one IEEE division gives the correctly rounded double.
    const char* q = b;
    const bool neg = *q == '-';
    if (*q == '-' || *q == '+') ++q;
    const char* const ds = q;
    uint64_t m = 0;
    while (q < e && is_digit(*q)) m = m * 10 + static_cast<uint64_t>(*q++ - '0');
    const char* const de = q;
    ptrdiff_t n_frac = 0;
    if (q < e && *q == '.') {
        const char* const fs = ++q;
        while (q < e && is_digit(*q)) m = m * 10 + static_cast<uint64_t>(*q++ - '0');
        n_frac = q - fs;
    }
    const ptrdiff_t n_digits = (de - ds) + n_frac;
    if ((q == e || is_blank(*q)) && n_digits >= 1 && n_digits <= 19 && m <= (uint64_t(1) << 53) && n_frac <= 22) {
        double d = static_cast<double>(m);
        if (n_frac > 0) d /= kPow10[n_frac];
        out = static_cast<float>(neg ? -d : d);
        tok_end = q;
        return Real::ok;
    }

    // General path: exponents, long mantissas, junk.
    const char* const te = token_end(q, e);
    tok_end = te;
    const char* p = b;
    if (*p == '+') {  // from_chars does not take '+'; Python's float() and libsvm files ("+1") do
        ++p;
        if (p == te || *p == '+' || *p == '-') return Real::not_number;
    }
    double d = 0.0;
    const auto r = std::from_chars(p, te, d);
    if (r.ec == std::errc::invalid_argument || r.ptr != te) return Real::not_number;
    if (r.ec == std::errc::result_out_of_range) {
        if (overflows(p, te)) return Real::out_of_range;
        out = (*p == '-') ? -0.0f : 0.0f;  // below the smallest double subnormal
        return Real::ok;
    }
    if (!std::isfinite(d)) return Real::not_finite;
    if (std::fabs(d) >= kFloatOverflow) return Real::out_of_range;
    out = static_cast<float>(d);
    return Real::ok;
}

std::string real_problem(Real r) {
    switch (r) {
        case Real::not_finite: return "is not finite";
        case Real::out_of_range: return "is out of the float32 range";
        default: return "is not a number";
    }
}

// Why the feature token [b, e) is not "digits:..." (cold path).
std::string bad_feature_token(const char* b, const char* e) {
    const size_t n = static_cast<size_t>(e - b);
    if (n >= 4 && std::memcmp(b, "qid:", 4) == 0)
        return "qid tokens are not supported (token " + show(b, e) + ")";
    const char* colon = static_cast<const char*>(std::memchr(b, ':', n));
    if (colon == nullptr) return "token " + show(b, e) + " is not of the form id:value (no ':')";
    if (colon == b) return "feature id is empty in token " + show(b, e);
    if (*b == '-' && colon - b > 1 && std::all_of(b + 1, colon, is_digit))
        return "feature id " + show(b, colon) + " is negative";
    return "feature id " + show(b, colon) + " is not a non-negative integer";
}

// Why the libFFM token [b, e) is not "field:feature:value" (cold path).
std::string bad_ffm_token(const char* b, const char* e) {
    const auto n_colons = std::count(b, e, ':');
    if (n_colons != 2)
        return "token " + show(b, e) + " is not of the form field:feature:value (" + std::to_string(n_colons) +
               " ':')";
    const char* c1 = static_cast<const char*>(std::memchr(b, ':', static_cast<size_t>(e - b)));
    const char* c2 = static_cast<const char*>(std::memchr(c1 + 1, ':', static_cast<size_t>(e - c1 - 1)));
    for (auto [fb, fe, what] : {std::tuple{b, c1, "field id"}, std::tuple{c1 + 1, c2, "feature id"}}) {
        if (fb == fe) return std::string(what) + " is empty in token " + show(b, e);
        if (*fb == '-' && fe - fb > 1 && std::all_of(fb + 1, fe, is_digit))
            return std::string(what) + " " + show(fb, fe) + " is negative";
        if (!std::all_of(fb, fe, is_digit)) return std::string(what) + " " + show(fb, fe) + " is not a non-negative integer";
    }
    return "token " + show(b, e) + " is not of the form field:feature:value";
}

// The base-10 digits at q (before le): their value, saturated at kMaxId + 1, and where they end.
const char* parse_digits(const char* q, const char* le, uint64_t& value) {
    const char* r = q;
    uint64_t v = 0;
    while (r < le && is_digit(*r)) v = v * 10 + static_cast<uint64_t>(*r++ - '0');
    if (r - q > 18) {  // the sum above may have wrapped: look past leading zeros
        const char* nz = q;
        while (nz < r - 1 && *nz == '0') ++nz;
        v = 0;
        if (r - nz > 10) v = static_cast<uint64_t>(kMaxId) + 1;
        else
            for (const char* c = nz; c < r; ++c) v = v * 10 + static_cast<uint64_t>(*c - '0');
    }
    value = v;
    return r;
}

bool fail(ParseError& err, int64_t line, std::string message, LibfmData& out) {
    err.line = line;
    err.message = std::move(message);
    out = LibfmData{};
    return false;
}

bool parse_impl(const char* data, size_t size, LibfmData& out, ParseError& err, TextFormat format) {
    const bool ffm = format == TextFormat::libffm;
    // Exact upper bounds: every row ends at a '\n' or at the end, every feature token holds a ':'.
    // (Blocks with 16-bit counters let the compiler vectorise the count 8 or 16 bytes at a time.)
    size_t n_colon = 0, n_newline = 0;
    for (size_t start = 0; start < size; start += 32768) {
        const char* blk = data + start;
        const size_t n = std::min<size_t>(size - start, 32768);
        uint16_t c = 0, l = 0;
        for (size_t i = 0; i < n; ++i) {
            c = static_cast<uint16_t>(c + (blk[i] == ':'));
            l = static_cast<uint16_t>(l + (blk[i] == '\n'));
        }
        n_colon += c;
        n_newline += l;
    }
    out.indptr.reserve(n_newline + 2);
    out.labels.reserve(n_newline + 1);
    out.indices.reserve(n_colon);
    out.values.reserve(n_colon);
    if (ffm) out.fields.reserve(n_colon / 2 + 1);
    out.indptr.push_back(0);

    int64_t max_id = -1;
    int64_t line = 0;
    const char* p = data;
    const char* const end = data + size;
    while (p < end) {
        ++line;
        const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
        const char* le = nl ? nl : end;
        const char* const next = nl ? nl + 1 : end;
        if (const char* z = static_cast<const char*>(std::memchr(p, '\0', static_cast<size_t>(le - p))))
            return fail(err, line, "NUL byte at column " + std::to_string(z - p + 1), out);
        if (le > p && le[-1] == '\r') --le;  // CRLF (or a final CR without LF)
        if (const char* h = static_cast<const char*>(std::memchr(p, '#', static_cast<size_t>(le - p)))) le = h;
        if (line == 1 && le - p >= 3 && std::memcmp(p, "\xEF\xBB\xBF", 3) == 0)
            return fail(err, line, "the file starts with a UTF-8 byte-order mark (BOM); remove it", out);

        const char* q = p;
        while (q < le && is_blank(*q)) ++q;
        if (q == le) {  // empty, blank or comment-only line: no row
            p = next;
            continue;
        }

        const char* te = nullptr;
        float label = 0.0f;
        const Real lr = parse_real(q, le, label, te);
        if (lr != Real::ok) {
            std::string msg = "label " + show(q, te) + " " + real_problem(lr);
            if (lr == Real::not_number && std::memchr(q, ':', static_cast<size_t>(te - q)))
                msg += " (is the label missing?)";
            return fail(err, line, std::move(msg), out);
        }
        q = te;

        for (;;) {
            while (q < le && is_blank(*q)) ++q;
            if (q == le) break;
            const char* const tb = q;
            uint64_t field = 0;
            if (ffm) {  // libFFM: field digits then ':'
                const char* f = parse_digits(q, le, field);
                if (f == q || f == le || *f != ':') return fail(err, line, bad_ffm_token(tb, token_end(tb, le)), out);
                if (field > static_cast<uint64_t>(kMaxFieldId))
                    return fail(err, line,
                                "field id " + show(q, f) + " is beyond the limit (max " + std::to_string(kMaxFieldId) +
                                    ")",
                                out);
                q = f + 1;
            }
            // id: digits then ':'
            uint64_t id = 0;
            const char* r = parse_digits(q, le, id);
            if (r == q || r == le || *r != ':')
                return fail(err, line,
                            ffm ? bad_ffm_token(tb, token_end(tb, le)) : bad_feature_token(q, token_end(q, le)), out);
            if (id > static_cast<uint64_t>(kMaxId))
                return fail(err, line,
                            "feature id " + show(q, r) + " is beyond the int32 range (max " +
                                std::to_string(kMaxId) + ")",
                            out);
            const char* vb = r + 1;
            if (vb == le || is_blank(*vb))
                return fail(err, line,
                            "value of feature " + std::to_string(id) + " is empty (token " + show(tb, vb) + ")",
                            out);
            const char* ve = nullptr;
            float v = 0.0f;
            const Real vr = parse_real(vb, le, v, ve);
            if (vr != Real::ok && ffm && std::memchr(vb, ':', static_cast<size_t>(ve - vb)))
                return fail(err, line, bad_ffm_token(tb, ve), out);  // "0:3:1:2"
            if (vr != Real::ok)
                return fail(err, line,
                            "value " + show(vb, ve) + " of feature " + std::to_string(id) + " " + real_problem(vr),
                            out);
            out.indices.push_back(static_cast<int32_t>(id));
            out.values.push_back(v);
            if (ffm) {
                out.fields.push_back(static_cast<int32_t>(field));
                if (static_cast<int64_t>(field) > out.max_field_id) out.max_field_id = static_cast<int64_t>(field);
            }
            if (static_cast<int64_t>(id) > max_id) max_id = static_cast<int64_t>(id);
            q = ve;
        }
        out.labels.push_back(label);
        out.indptr.push_back(static_cast<int64_t>(out.indices.size()));
        p = next;
    }
    out.max_feature_id = max_id;
    return true;
}

std::string os_error(int e) { return std::error_code(e, std::generic_category()).message(); }

}  // namespace

bool parse_libfm(const char* data, size_t size, LibfmData& out, ParseError& err, TextFormat format) {
    err = ParseError{};
    try {
        out = LibfmData{};
        if (size > 0 && data == nullptr) return fail(err, 0, "null buffer", out);
        return parse_impl(data, size, out, err, format);
    } catch (const std::bad_alloc&) {
        out = LibfmData{};
        err.line = 0;
        err.message = "out of memory while parsing";  // `out` was freed first, so this small string fits
        return false;
    } catch (...) {
        out = LibfmData{};
        err.line = 0;
        err.message = "internal error while parsing";
        return false;
    }
}

bool parse_libfm_file(const std::string& path, LibfmData& out, ParseError& err, TextFormat format) {
    err = ParseError{};
    try {
        out = LibfmData{};
        struct Closer {
            void operator()(std::FILE* f) const { std::fclose(f); }
        };
        if (path.find('\0') != std::string::npos)
            return fail(err, 0, "cannot open the file: the path holds a NUL byte", out);
        errno = 0;
        std::unique_ptr<std::FILE, Closer> f(std::fopen(path.c_str(), "rb"));
        if (!f) return fail(err, 0, "cannot open the file: " + os_error(errno), out);

        // Regular files and pipes only: a character device (/dev/zero) or the like would be read without end.
        struct stat st {};
        if (::fstat(fileno(f.get()), &st) != 0)
            return fail(err, 0, "cannot read the file: " + os_error(errno), out);
        if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) {
            const char* kind = S_ISCHR(st.st_mode)   ? "a character device"
                               : S_ISBLK(st.st_mode) ? "a block device"
                               : S_ISDIR(st.st_mode) ? "a directory"
                               : S_ISSOCK(st.st_mode) ? "a socket"
                                                      : "not a regular file";
            return fail(err, 0, std::string("cannot read the file: it is ") + kind + ", not a regular file or a pipe",
                        out);
        }
        // The size of a regular file sizes the buffer (a file growing while it is read is read further); a pipe
        // reports none.
        const bool regular = S_ISREG(st.st_mode);
        const auto hint = static_cast<uint64_t>(st.st_size);
        size_t cap = (!regular || hint > (uint64_t(1) << 40)) ? size_t(1) << 16 : static_cast<size_t>(hint) + 1;
        std::unique_ptr<char[]> buf(new char[cap]);
        size_t len = 0;
        for (;;) {
            const size_t want = cap - len;
            errno = 0;
            const size_t got = std::fread(buf.get() + len, 1, want, f.get());
            len += got;
            if (got < want) {
                if (std::ferror(f.get())) return fail(err, 0, "cannot read the file: " + os_error(errno), out);
                break;  // end of file
            }
            std::unique_ptr<char[]> bigger(new char[cap * 2]);
            std::memcpy(bigger.get(), buf.get(), len);
            buf = std::move(bigger);
            cap *= 2;
        }
        f.reset();
        return parse_impl(buf.get(), len, out, err, format);
    } catch (const std::bad_alloc&) {
        out = LibfmData{};
        err.line = 0;
        err.message = "out of memory while reading";
        return false;
    } catch (...) {
        out = LibfmData{};
        err.line = 0;
        err.message = "internal error while reading";
        return false;
    }
}

}  // namespace afm
