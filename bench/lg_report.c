/*
 * sockmem-bench: results, allocation counters and small utilities.
 */
#include <errno.h>
#include <jemalloc/jemalloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loadgen.h"

uint64_t sm_lg_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t sm_lg_thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void sm_lg_die(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One line, whatever the message held. */
	for (char *p = line; *p; p++)
		if (*p == '\n')
			*p = ' ';
	fprintf(stderr, "sockmem-bench: %s\n", line);
	exit(1);
}

int sm_lg_cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double sm_lg_quantile(const double *sorted, size_t n, double q)
{
	size_t i;

	if (n == 0)
		return 0.0;
	/* Nearest rank: the smallest value with at least q of the samples at or below it. */
	i = (size_t)ceil(q * (double)n);
	if (i > 0)
		i--;
	if (i >= n)
		i = n - 1;
	return sorted[i];
}

/*
 * jemalloc keeps cumulative per-thread byte counters; "thread.allocatedp"
 * hands out a pointer to the live counter so a snapshot costs one load.
 * Resolved per thread (the pointer is thread-specific).
 */
void sm_lg_alloc_snap(struct sm_lg_alloc *a)
{
	uint64_t *pa = NULL, *pd = NULL;
	size_t sz = sizeof(pa);

	a->ok = false;
	a->alloc = a->dealloc = 0;
	if (mallctl("thread.allocatedp", &pa, &sz, NULL, 0) != 0 || pa == NULL)
		return;
	sz = sizeof(pd);
	if (mallctl("thread.deallocatedp", &pd, &sz, NULL, 0) != 0 || pd == NULL)
		return;
	a->alloc = *pa;
	a->dealloc = *pd;
	a->ok = true;
}

void sm_lg_alloc_add(struct sm_lg_report *r, const struct sm_lg_alloc *before,
		     const struct sm_lg_alloc *after)
{
	if (!before->ok || !after->ok || r->alloc_bytes < 0) {
		r->alloc_bytes = r->dealloc_bytes = -1;
		return;
	}
	r->alloc_bytes += (int64_t)(after->alloc - before->alloc);
	r->dealloc_bytes += (int64_t)(after->dealloc - before->dealloc);
}

static struct sm_lg_kv *kv_add(struct sm_lg_kv *v, int *n, const char *key)
{
	if (*n >= LG_KV_MAX)
		sm_lg_die("internal: too many report fields (%s)", key);
	v[*n] = (struct sm_lg_kv){.key = key, .kind = LG_NULL};
	return &v[(*n)++];
}

void sm_lg_param_int(struct sm_lg_report *r, const char *key, int64_t v)
{
	struct sm_lg_kv *kv = kv_add(r->params, &r->nparams, key);

	kv->kind = LG_INT;
	kv->i = v;
}

void sm_lg_param_str(struct sm_lg_report *r, const char *key, const char *v)
{
	struct sm_lg_kv *kv = kv_add(r->params, &r->nparams, key);

	kv->kind = v ? LG_STR : LG_NULL;
	kv->s = v;
}

void sm_lg_result_int(struct sm_lg_report *r, const char *key, int64_t v)
{
	struct sm_lg_kv *kv = kv_add(r->results, &r->nresults, key);

	kv->kind = LG_INT;
	kv->i = v;
}

void sm_lg_result_dbl(struct sm_lg_report *r, const char *key, double v)
{
	struct sm_lg_kv *kv = kv_add(r->results, &r->nresults, key);

	kv->kind = isfinite(v) ? LG_DBL : LG_NULL;
	kv->d = v;
}

void sm_lg_result_samples(struct sm_lg_report *r, double *v, int n)
{
	r->samples = v;
	r->nsamples = n;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_value(const struct sm_lg_kv *kv)
{
	switch (kv->kind) {
	case LG_INT:
		printf("%lld", (long long)kv->i);
		break;
	case LG_DBL:
		printf("%.6g", kv->d);
		break;
	case LG_STR:
		json_str(kv->s);
		break;
	default:
		fputs("null", stdout);
	}
}

static void json_object(const char *name, const struct sm_lg_kv *v, int n)
{
	printf(",");
	json_str(name);
	printf(":{");
	for (int i = 0; i < n; i++) {
		if (i)
			putchar(',');
		json_str(v[i].key);
		putchar(':');
		json_value(&v[i]);
	}
	putchar('}');
}

static void print_env(const char *name, bool json, bool first)
{
	const char *v = getenv(name);

	if (!json) {
		if (v)
			printf("  env %s=%s\n", name, v);
		return;
	}
	printf("%s", first ? "" : ",");
	json_str(name);
	putchar(':');
	if (v)
		json_str(v);
	else
		fputs("null", stdout);
}

static void print_json(const struct sm_lg_opts *o, const struct sm_lg_report *r)
{
	printf("{\"mode\":");
	json_str(o->mode_name);
	json_object("params", r->params, r->nparams);
	json_object("results", r->results, r->nresults);
	if (o->samples && r->samples) {
		printf(",\"samples\":[");
		for (int i = 0; i < r->nsamples; i++)
			printf("%s%.6g", i ? "," : "", r->samples[i]);
		putchar(']');
	}
	printf(",\"alloc\":{\"source\":\"jemalloc thread.allocatedp\",\"scope\":");
	json_str(r->alloc_scope ? r->alloc_scope : "measured threads");
	if (r->alloc_bytes < 0)
		printf(",\"allocated_bytes\":null,\"deallocated_bytes\":null}");
	else
		printf(",\"allocated_bytes\":%lld,\"deallocated_bytes\":%lld}",
		       (long long)r->alloc_bytes, (long long)r->dealloc_bytes);
	printf(",\"env\":{");
	print_env("LD_PRELOAD", true, true);
	print_env("SOCKMEM_GROUP", true, false);
	print_env("SOCKMEM_NAMESPACE", true, false);
	print_env("SOCKMEM_MAX", true, false);
	printf("}}\n");
}

static void text_value(const struct sm_lg_kv *kv)
{
	switch (kv->kind) {
	case LG_INT:
		printf("%lld", (long long)kv->i);
		break;
	case LG_DBL:
		printf("%.4g", kv->d);
		break;
	case LG_STR:
		printf("%s", kv->s);
		break;
	default:
		printf("n/a");
	}
}

static void print_text(const struct sm_lg_opts *o, const struct sm_lg_report *r)
{
	printf("sockmem-bench %s:", o->mode_name);
	for (int i = 0; i < r->nparams; i++) {
		printf(" %s=", r->params[i].key);
		text_value(&r->params[i]);
	}
	putchar('\n');
	for (int i = 0; i < r->nresults; i++) {
		printf("  %-22s ", r->results[i].key);
		text_value(&r->results[i]);
		putchar('\n');
	}
	if (r->alloc_bytes < 0)
		printf("  %-22s n/a (allocator is not jemalloc with stats)\n",
		       "hot_loop_allocated");
	else
		printf("  %-22s %lld B allocated, %lld B freed (%s)\n", "hot_loop_allocated",
		       (long long)r->alloc_bytes, (long long)r->dealloc_bytes,
		       r->alloc_scope ? r->alloc_scope : "measured threads");
	print_env("LD_PRELOAD", false, true);
	print_env("SOCKMEM_GROUP", false, false);
	print_env("SOCKMEM_NAMESPACE", false, false);
}

void sm_lg_print(const struct sm_lg_opts *o, const struct sm_lg_report *r)
{
	if (o->json)
		print_json(o, r);
	else
		print_text(o, r);
	fflush(stdout);
}
