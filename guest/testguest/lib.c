/* Test guest library: the C runtime gcc expects, plus a tiny formatter.
 * Used from both rings (in ring 0 it is slow: format rarely there). */
#include "tg.h"

void *memcpy(void *d, const void *s, usize n)
{
    u8 *dp = d;
    const u8 *sp = s;
    while (n--)
        *dp++ = *sp++;
    return d;
}

void *memset(void *d, int c, usize n)
{
    u8 *dp = d;
    while (n--)
        *dp++ = (u8)c;
    return d;
}

int memcmp(const void *a, const void *b, usize n)
{
    const u8 *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

usize strlen(const char *s)
{
    usize n = 0;
    while (s[n])
        n++;
    return n;
}

int strncmp(const char *a, const char *b, usize n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b)
            return (u8)*a - (u8)*b;
        if (!*a)
            return 0;
    }
    return 0;
}

struct out {
    char *buf;
    int size, n;
};

static void put(struct out *o, char c)
{
    if (o->n < o->size - 1)
        o->buf[o->n] = c;
    o->n++;
}

static void put_num(struct out *o, u64 v, unsigned base, int neg)
{
    char tmp[24];
    int i = 0;
    do {
        unsigned d = (unsigned)(v % base);
        tmp[i++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    if (neg)
        put(o, '-');
    while (i)
        put(o, tmp[--i]);
}

/* %s %c %d %u %x with an optional l; %% */
int vfmt(char *buf, int size, const char *f, __builtin_va_list ap)
{
    struct out o = {buf, size, 0};
    for (; *f; f++) {
        if (*f != '%') {
            put(&o, *f);
            continue;
        }
        f++;
        int lng = 0;
        while (*f == 'l') {
            lng = 1;
            f++;
        }
        switch (*f) {
        case 's': {
            const char *s = __builtin_va_arg(ap, const char *);
            while (*s)
                put(&o, *s++);
            break;
        }
        case 'c':
            put(&o, (char)__builtin_va_arg(ap, int));
            break;
        case 'd': {
            i64 v = lng ? __builtin_va_arg(ap, i64) : __builtin_va_arg(ap, int);
            put_num(&o, v < 0 ? (u64)-v : (u64)v, 10, v < 0);
            break;
        }
        case 'u':
        case 'x': {
            u64 v = lng ? __builtin_va_arg(ap, u64) : __builtin_va_arg(ap, unsigned);
            put_num(&o, v, *f == 'x' ? 16 : 10, 0);
            break;
        }
        case '%':
            put(&o, '%');
            break;
        default:
            put(&o, '?');
            break;
        }
    }
    if (size > 0)
        buf[o.n < size ? o.n : size - 1] = 0;
    return o.n < size ? o.n : size - 1;
}

int fmt(char *buf, int size, const char *f, ...)
{
    __builtin_va_list ap;
    __builtin_va_start(ap, f);
    int n = vfmt(buf, size, f, ap);
    __builtin_va_end(ap);
    return n;
}

/* ---- ring-3 console ---- */
void uputs(const char *s) { gate2(G_WRITE, s, strlen(s)); }

void uprintf(const char *f, ...)
{
    char buf[1024];
    __builtin_va_list ap;
    __builtin_va_start(ap, f);
    int n = vfmt(buf, sizeof(buf), f, ap);
    __builtin_va_end(ap);
    gate2(G_WRITE, buf, n);
}

NORETURN void upoweroff(void)
{
    gate0(G_POWEROFF);
    for (;;)
        ;
}

NORETURN void upanic(const char *f, ...)
{
    char buf[512];
    __builtin_va_list ap;
    __builtin_va_start(ap, f);
    int n = fmt(buf, sizeof(buf), "PANIC ");
    n += vfmt(buf + n, (int)sizeof(buf) - n - 1, f, ap);
    __builtin_va_end(ap);
    buf[n++] = '\n';
    gate2(G_WRITE, buf, n);
    upoweroff();
}
