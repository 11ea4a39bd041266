/*
 * musl builds only (see build.rs). First, the two fortified stdio entry points that Debian's libnftnl.a calls
 * (it is compiled against glibc with _FORTIFY_SOURCE). Each checks the destination's size as
 * glibc's does, then formats with the plain function. Every other libc symbol libnftnl.a
 * uses, musl provides under the same name and ABI (__ctype_b_loc and __errno_location
 * included).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

int __snprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *fmt, ...);
int __fprintf_chk(FILE *f, int flag, const char *fmt, ...);

int __snprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *fmt, ...)
{
	va_list ap;
	int n;

	(void)flag;
	if (slen < maxlen)
		abort();
	va_start(ap, fmt);
	n = vsnprintf(s, maxlen, fmt, ap);
	va_end(ap);
	return n;
}

int __fprintf_chk(FILE *f, int flag, const char *fmt, ...)
{
	va_list ap;
	int n;

	(void)flag;
	va_start(ap, fmt);
	n = vfprintf(f, fmt, ap);
	va_end(ap);
	return n;
}

/*
 * memcpy, memmove, memset and memcmp for musl builds. musl's x86-64 memcpy and memset are
 * `rep movsq` / `rep stosq` for every size and its memcmp is a byte loop; most calls from
 * Rust code copy or compare a few dozen bytes, where those start-ups dominate (measured:
 * README, "Benchmarks"). Sizes up to 64 bytes are done with overlapping unaligned loads,
 * all before any store (so they are also correct for overlapping buffers); larger copies
 * and fills use `rep movsb` / `rep stosb` (fast on CPUs with ERMS, which every x86-64 CPU
 * of the last decade has). Linked before musl's libc.a, these definitions take precedence.
 */
#include <emmintrin.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t ld8(const unsigned char *p)
{
	uint64_t v;
	__builtin_memcpy(&v, p, 8);
	return v;
}

static inline void st8(unsigned char *p, uint64_t v)
{
	__builtin_memcpy(p, &v, 8);
}

static inline uint32_t ld4(const unsigned char *p)
{
	uint32_t v;
	__builtin_memcpy(&v, p, 4);
	return v;
}

static inline void st4(unsigned char *p, uint32_t v)
{
	__builtin_memcpy(p, &v, 4);
}

/* Copy n <= 64 bytes: every load before the first store. */
static inline void copy_small(unsigned char *d, const unsigned char *s, size_t n)
{
	if (n >= 32) {
		__m128i a = _mm_loadu_si128((const __m128i *)s);
		__m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
		__m128i c = _mm_loadu_si128((const __m128i *)(s + n - 32));
		__m128i e = _mm_loadu_si128((const __m128i *)(s + n - 16));
		_mm_storeu_si128((__m128i *)d, a);
		_mm_storeu_si128((__m128i *)(d + 16), b);
		_mm_storeu_si128((__m128i *)(d + n - 32), c);
		_mm_storeu_si128((__m128i *)(d + n - 16), e);
	} else if (n >= 16) {
		__m128i a = _mm_loadu_si128((const __m128i *)s);
		__m128i b = _mm_loadu_si128((const __m128i *)(s + n - 16));
		_mm_storeu_si128((__m128i *)d, a);
		_mm_storeu_si128((__m128i *)(d + n - 16), b);
	} else if (n >= 8) {
		uint64_t a = ld8(s), b = ld8(s + n - 8);
		st8(d, a);
		st8(d + n - 8, b);
	} else if (n >= 4) {
		uint32_t a = ld4(s), b = ld4(s + n - 4);
		st4(d, a);
		st4(d + n - 4, b);
	} else if (n > 0) {
		unsigned char a = s[0], b = s[n / 2], c = s[n - 1];
		d[0] = a;
		d[n / 2] = b;
		d[n - 1] = c;
	}
}

void *memcpy(void *restrict dest, const void *restrict src, size_t n)
{
	unsigned char *d = dest;
	const unsigned char *s = src;

	if (n <= 64) {
		copy_small(d, s, n);
		return dest;
	}
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return dest;
}

void *memmove(void *dest, const void *src, size_t n)
{
	unsigned char *d = dest;
	const unsigned char *s = src;

	if (n <= 64) {
		copy_small(d, s, n);
		return dest;
	}
	if ((uintptr_t)d - (uintptr_t)s >= n) {
		/* No overlap, or the destination starts below the source: a forward copy. */
		__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
		return dest;
	}
	/*
	 * The destination overlaps the source's end: copy 16-byte chunks at n-16, n-32, ...
	 * down to the last one at 16 or above, each loaded before it is stored (a store only
	 * reaches source bytes above the chunk, already copied). The at most 32 bytes below
	 * them are loaded before any store and stored last.
	 */
	{
		size_t t = (n - 16) % 16;
		__m128i h0 = _mm_loadu_si128((const __m128i *)s);
		__m128i h1 = _mm_loadu_si128((const __m128i *)(s + t));

		for (size_t o = n - 16; o >= 16; o -= 16) {
			__m128i x = _mm_loadu_si128((const __m128i *)(s + o));
			_mm_storeu_si128((__m128i *)(d + o), x);
		}
		_mm_storeu_si128((__m128i *)(d + t), h1);
		_mm_storeu_si128((__m128i *)d, h0);
	}
	return dest;
}

void *memset(void *dest, int c, size_t n)
{
	unsigned char *d = dest;
	uint64_t v = 0x0101010101010101ULL * (unsigned char)c;

	if (n >= 16 && n <= 64) {
		__m128i x = _mm_set1_epi8((char)c);
		_mm_storeu_si128((__m128i *)d, x);
		_mm_storeu_si128((__m128i *)(d + n - 16), x);
		if (n > 32) {
			_mm_storeu_si128((__m128i *)(d + 16), x);
			_mm_storeu_si128((__m128i *)(d + n - 32), x);
		}
	} else if (n >= 8 && n < 16) {
		st8(d, v);
		st8(d + n - 8, v);
	} else if (n >= 4 && n < 8) {
		st4(d, (uint32_t)v);
		st4(d + n - 4, (uint32_t)v);
	} else if (n > 0 && n < 4) {
		d[0] = (unsigned char)c;
		d[n / 2] = (unsigned char)c;
		d[n - 1] = (unsigned char)c;
	} else if (n > 64) {
		__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	}
	return dest;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *l = a, *r = b;

	/* Eight bytes at a time while they are equal, then the first differing byte. */
	while (n >= 8 && ld8(l) == ld8(r)) {
		l += 8;
		r += 8;
		n -= 8;
	}
	for (; n && *l == *r; n--, l++, r++)
		;
	return n ? *l - *r : 0;
}
