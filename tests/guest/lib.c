/* lib.c: freestanding memory/string helpers and the line-buffered console output of the test guest. */
#include "guest.h"

void *memcpy(void *d, const void *s, size_t n)
{
	void *r = d;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return r;
}

void *memset(void *d, int c, size_t n)
{
	void *r = d;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return r;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const u8 *x = a, *y = b;
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] - y[i];
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

/* Decimal only; rejects empty strings, other characters and overflow. */
int parse_u64(const char *s, size_t n, u64 *out)
{
	u64 v = 0;
	if (n == 0 || n > 19)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (u64)(s[i] - '0');
	}
	*out = v;
	return 1;
}

/* One line is assembled here and sent with a single uart_write, so the UART is polled per 16 bytes. */
static char line[512];
static size_t line_len;

void out_strn(const char *s, size_t n)
{
	for (size_t i = 0; i < n && line_len < sizeof(line) - 1; i++)
		line[line_len++] = s[i];
}

void out_str(const char *s) { out_strn(s, strlen(s)); }

void out_dec(u64 v)
{
	char b[20];
	int i = 20;
	do {
		b[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	out_strn(b + i, 20 - i);
}

void out_sdec(s64 v)
{
	if (v < 0) {
		out_str("-");
		out_dec((u64)-v);
	} else {
		out_dec((u64)v);
	}
}

void out_hex(u64 v)
{
	char b[16];
	int i = 16;
	do {
		b[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	out_str("0x");
	out_strn(b + i, 16 - i);
}

void out_end(void)
{
	line[line_len++] = '\n';
	uart_write(line, line_len);
	line_len = 0;
}

void say(const char *s)
{
	out_str(s);
	out_end();
}

/* Fixed width, lowercase, no 0x: PCI ids and class codes, MAC bytes. */
void out_hexn(u64 v, int digits)
{
	char b[16];
	if (digits > 16)
		digits = 16;
	for (int i = digits - 1; i >= 0; i--) {
		b[i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	}
	out_strn(b, (size_t)digits);
}
