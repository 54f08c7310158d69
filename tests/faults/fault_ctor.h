/*
 * libsockmem-fault-ctor: a library whose constructor creates a loopback TCP
 * connection and sends FAULT_CTOR_BYTES that nobody reads, before main()
 * runs (and, depending on the loader's order, before the preloaded shim's
 * own constructor).
 */
#ifndef SOCKMEM_FAULT_CTOR_H
#define SOCKMEM_FAULT_CTOR_H

#define FAULT_CTOR_BYTES (48 * 1024)

/* What the constructor did: its two sockets (sender, receiver), the bytes it
 * sent, and 0 or the errno of the first call that failed. */
int fault_ctor_result(int *tx_fd, int *rx_fd, long *sent);

#endif
