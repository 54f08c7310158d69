/*
 * Force-included (-include) into the fuzz build's private copy of the core,
 * only when lib/internal.h's sm_log_once does not compile with clang: it
 * applies __atomic_exchange_n to a `static _Atomic int`, which gcc accepts
 * and clang rejects ("address argument to atomic operation must be a
 * pointer to integer"). Mapping the builtin onto C11's atomic_exchange_explicit
 * is equivalent for that one use (the only __atomic_exchange_n in lib/).
 * CMake applies it only when a compile-only probe of sm_log_once fails, so it
 * is inert once internal.h declares the flag as a plain int.
 */
#include <stdatomic.h>
#define __atomic_exchange_n(p, v, order) atomic_exchange_explicit((p), (v), (order))
