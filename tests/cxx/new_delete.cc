// tests/cxx/new_delete.cc - memalloc's C++ operators, run by tests/cxx/run.sh
// under LD_PRELOAD and linked with libmemalloc.a.
//
//   new_delete forms     every replaceable form of new and delete, checking
//                        that memalloc's definitions are the ones called,
//                        that blocks are aligned and usable, and that the
//                        nothrow forms return nullptr on an impossible size
//   new_delete oom       new under RLIMIT_AS throws std::bad_alloc
//   new_delete handler   a new-handler frees a reserve; the retry succeeds
//   new_delete mismatch  a sized delete with the wrong size (MEMALLOC_CHECK=1
//                        aborts with one memalloc: line)
#include <dlfcn.h>
#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

extern "C" int ma_arena_of(const void *p) __attribute__((weak));
extern "C" size_t ma_usable_size(const void *p) __attribute__((weak));

static int failures;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                          \
        }                                                                        \
    } while (0)

// The object that defines the function at `fn`: memalloc's library when
// preloaded, the program itself when linked statically; never libstdc++.
static bool defined_by_memalloc(const void *fn, const char *what)
{
    Dl_info info;
    if (dladdr(fn, &info) == 0 || info.dli_fname == nullptr) {
        std::fprintf(stderr, "FAIL: dladdr found nothing for %s\n", what);
        return false;
    }
    if (std::strstr(info.dli_fname, "libstdc++") != nullptr) {
        std::fprintf(stderr, "FAIL: %s comes from %s\n", what, info.dli_fname);
        return false;
    }
    return true;
}

// A block from memalloc, usable for n bytes, aligned to al: written in full.
static void check_block(void *p, size_t n, size_t al)
{
    CHECK(p != nullptr);
    if (p == nullptr)
        return;
    CHECK(reinterpret_cast<uintptr_t>(p) % al == 0);
    CHECK(ma_usable_size(p) >= n);
    std::memset(p, 0x5a, n);
    CHECK(static_cast<unsigned char *>(p)[n - 1] == 0x5a);
}

struct alignas(256) Wide {
    char bytes[300];
};

static int forms()
{
    CHECK(ma_arena_of != nullptr && ma_usable_size != nullptr);
    if (ma_arena_of == nullptr || ma_usable_size == nullptr)
        return 1;
    using new_fn = void *(*)(std::size_t);
    using del_fn = void (*)(void *) noexcept;
    CHECK(defined_by_memalloc(reinterpret_cast<const void *>(static_cast<new_fn>(&::operator new)), "operator new"));
    CHECK(defined_by_memalloc(reinterpret_cast<const void *>(static_cast<new_fn>(&::operator new[])), "operator new[]"));
    CHECK(defined_by_memalloc(reinterpret_cast<const void *>(static_cast<del_fn>(&::operator delete)), "operator delete"));
    using sized_del_fn = void (*)(void *, std::size_t) noexcept;
    CHECK(defined_by_memalloc(reinterpret_cast<const void *>(static_cast<sized_del_fn>(&::operator delete)),
                              "sized operator delete"));
    using al_new_fn = void *(*)(std::size_t, std::align_val_t);
    CHECK(defined_by_memalloc(reinterpret_cast<const void *>(static_cast<al_new_fn>(&::operator new)),
                              "aligned operator new"));

    const size_t sizes[] = {1, 8, 24, 100, 1000, 5000, 70000, 300000};
    for (size_t n : sizes) {
        void *p = ::operator new(n);
        check_block(p, n, 16);
        ::operator delete(p);
        p = ::operator new[](n);
        check_block(p, n, 16);
        ::operator delete[](p);
        p = ::operator new(n, std::nothrow);
        check_block(p, n, 16);
        ::operator delete(p, std::nothrow);
        p = ::operator new[](n, std::nothrow);
        check_block(p, n, 16);
        ::operator delete[](p, std::nothrow);
        p = ::operator new(n);
        check_block(p, n, 16);
        ::operator delete(p, n);
        p = ::operator new[](n);
        check_block(p, n, 16);
        ::operator delete[](p, n);
        for (size_t al : {32ul, 64ul, 4096ul, 65536ul}) {
            std::align_val_t a{al};
            p = ::operator new(n, a);
            check_block(p, n, al);
            ::operator delete(p, a);
            p = ::operator new[](n, a);
            check_block(p, n, al);
            ::operator delete[](p, a);
            p = ::operator new(n, a, std::nothrow);
            check_block(p, n, al);
            ::operator delete(p, a, std::nothrow);
            p = ::operator new[](n, a, std::nothrow);
            check_block(p, n, al);
            ::operator delete[](p, a, std::nothrow);
            p = ::operator new(n, a);
            check_block(p, n, al);
            ::operator delete(p, n, a);
            p = ::operator new[](n, a);
            check_block(p, n, al);
            ::operator delete[](p, n, a);
        }
    }
    // new of size 0 gives distinct, freeable blocks.
    void *z1 = ::operator new(0), *z2 = ::operator new(0);
    CHECK(z1 != nullptr && z2 != nullptr && z1 != z2);
    ::operator delete(z1);
    ::operator delete(z2);
    // Expressions: the compiler's own calls (sized delete of a class, an
    // over-aligned type, arrays with cookies).
    for (int i = 0; i < 1000; i++) {
        auto *w = new Wide;
        CHECK(reinterpret_cast<uintptr_t>(w) % 256 == 0);
        CHECK(ma_arena_of(w) >= 0);
        delete w;
        auto *ws = new Wide[3];
        CHECK(reinterpret_cast<uintptr_t>(ws) % 256 == 0);
        delete[] ws;
        auto *s = new std::string(100, 'x');
        delete s;
    }
    // An impossible size: nothrow gives nullptr, the throwing form throws.
    size_t huge = SIZE_MAX / 2;
    CHECK(::operator new(huge, std::nothrow) == nullptr);
    CHECK(::operator new[](huge, std::align_val_t{64}, std::nothrow) == nullptr);
    bool threw = false;
    try {
        void *volatile p = ::operator new(huge);
        (void)p;
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    CHECK(threw);
    return failures != 0;
}

// RLIMIT_AS of 1 GiB: a 4 GiB new cannot be mapped.
static void limit_address_space()
{
    struct rlimit r = {1ul << 30, 1ul << 30};
    if (setrlimit(RLIMIT_AS, &r) != 0) {
        std::perror("setrlimit");
        std::exit(2);
    }
}

static int oom()
{
    limit_address_space();
    bool threw = false;
    try {
        char *volatile p = new char[4ul << 30];
        p[0] = 1;
    } catch (const std::bad_alloc &e) {
        threw = true;
        std::printf("caught std::bad_alloc: %s\n", e.what());
    }
    CHECK(threw);
    CHECK(new (std::nothrow) char[4ul << 30] == nullptr);
    return failures != 0;
}

static char *reserve;
static int handler_calls;

static void free_reserve()
{
    handler_calls++;
    delete[] reserve;
    reserve = nullptr;
    std::set_new_handler(nullptr);
}

static int handler()
{
    // Hold 600 MiB, so that under a 1 GiB limit a 600 MiB new fails until
    // the handler gives the reserve back.
    reserve = new char[600ul << 20];
    std::memset(reserve, 1, 4096);
    limit_address_space();
    std::set_new_handler(free_reserve);
    char *p = new char[600ul << 20];
    p[0] = 2;
    CHECK(handler_calls == 1);
    CHECK(reserve == nullptr);
    delete[] p;
    std::printf("new-handler called %d time(s), retry succeeded\n", handler_calls);
    return failures != 0;
}

static int mismatch()
{
    char *p = new char[100];
    std::memset(p, 0, 100);
    ::operator delete[](p, 50); // wrong size: must abort in check mode
    std::printf("not stopped\n");
    return 1;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "forms";
    int rc;
    if (std::strcmp(mode, "forms") == 0)
        rc = forms();
    else if (std::strcmp(mode, "oom") == 0)
        rc = oom();
    else if (std::strcmp(mode, "handler") == 0)
        rc = handler();
    else if (std::strcmp(mode, "mismatch") == 0)
        rc = mismatch();
    else {
        std::fprintf(stderr, "usage: new_delete forms|oom|handler|mismatch\n");
        return 2;
    }
    if (rc == 0)
        std::printf("%s: ok\n", mode);
    return rc;
}
