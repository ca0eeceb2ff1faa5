/* SPDX-License-Identifier: MIT */
/* core/pool.c: a fixed pool of worker threads running parallel-for jobs, and a bounded
 * blocking MPMC queue. The pool keeps a FIFO of jobs; each job hands out indices with an atomic
 * counter, so concurrent callers share the workers fairly and the calling thread works too. */
#include "core/core.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

typedef struct job {
    lip_task_fn fn;
    void *arg;
    int n;
    atomic_int next;
    atomic_int done;
    struct job *qnext;
    int active; /* workers inside job_work(), guarded by the pool mutex */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} job;

struct lip_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_cond_t idle_cv; /* a worker left a job */
    job *head, *tail;
    bool stop;
    int nthreads;
    pthread_t *threads;
};

int lip_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Runs indices of j until none are left. */
static void job_work(job *j)
{
    int i;
    while ((i = atomic_fetch_add(&j->next, 1)) < j->n) {
        j->fn(j->arg, i);
        if (atomic_fetch_add(&j->done, 1) + 1 == j->n) {
            pthread_mutex_lock(&j->mu);
            pthread_cond_broadcast(&j->cv);
            pthread_mutex_unlock(&j->mu);
        }
    }
}

static void *worker(void *arg)
{
    lip_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && !p->head) pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop) break;
        job *j = p->head;
        /* Leave the job at the head while it still has indices to hand out. */
        if (atomic_load(&j->next) >= j->n) {
            p->head = j->qnext;
            if (!p->head) p->tail = NULL;
            continue;
        }
        j->active++;
        pthread_mutex_unlock(&p->mu);
        job_work(j);
        pthread_mutex_lock(&p->mu);
        if (p->head == j) {
            p->head = j->qnext;
            if (!p->head) p->tail = NULL;
        }
        if (--j->active == 0) pthread_cond_broadcast(&p->idle_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

lip_pool *lip_pool_new(int nthreads)
{
    if (nthreads <= 0) nthreads = lip_cpu_count();
    lip_pool *p = lip_calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->idle_cv, NULL);
    /* The caller's thread works too, so n-1 helpers give n-way parallelism. */
    p->threads = lip_calloc((size_t)nthreads, sizeof *p->threads);
    if (!p->threads) goto fail;
    for (int i = 0; i < nthreads - 1; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) goto fail;
        p->nthreads++;
    }
    return p;
fail:
    lip_pool_free(p);
    return NULL;
}

void lip_pool_free(lip_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++) pthread_join(p->threads[i], NULL);
    lip_free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->idle_cv);
    lip_free(p);
}

int lip_pool_size(const lip_pool *p) { return p ? p->nthreads + 1 : 1; }

void lip_pool_run(lip_pool *p, int n, lip_task_fn fn, void *arg)
{
    if (n <= 0) return;
    if (!p || p->nthreads == 0 || n == 1) {
        for (int i = 0; i < n; i++) fn(arg, i);
        return;
    }
    job j = {.fn = fn, .arg = arg, .n = n};
    atomic_init(&j.next, 0);
    atomic_init(&j.done, 0);
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);
    pthread_mutex_lock(&p->mu);
    if (p->tail) p->tail->qnext = &j;
    else p->head = &j;
    p->tail = &j;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);

    job_work(&j);

    pthread_mutex_lock(&j.mu);
    while (atomic_load(&j.done) < n) pthread_cond_wait(&j.cv, &j.mu);
    pthread_mutex_unlock(&j.mu);
    /* Make sure no worker still references j in the queue before it goes out of scope. */
    pthread_mutex_lock(&p->mu);
    job **pp = &p->head, *prev = NULL;
    while (*pp) {
        if (*pp == &j) {
            *pp = j.qnext;
            if (p->tail == &j) p->tail = prev;
            break;
        }
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    while (j.active > 0) pthread_cond_wait(&p->idle_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_destroy(&j.mu);
    pthread_cond_destroy(&j.cv);
}

/* ---- bounded queue --------------------------------------------------------------------------- */
struct lip_queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    void **items;
    size_t cap, head, len;
    bool closed;
};

lip_queue *lip_queue_new(size_t capacity)
{
    if (capacity == 0) capacity = 1;
    lip_queue *q = lip_calloc(1, sizeof *q);
    if (!q) return NULL;
    q->items = lip_calloc(capacity, sizeof(void *));
    if (!q->items) {
        lip_free(q);
        return NULL;
    }
    q->cap = capacity;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->not_empty, &ca);
    pthread_cond_init(&q->not_full, &ca);
    pthread_condattr_destroy(&ca);
    return q;
}

void lip_queue_free(lip_queue *q)
{
    if (!q) return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    lip_free(q->items);
    lip_free(q);
}

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int lip_queue_push(lip_queue *q, void *item, int timeout_ms)
{
    struct timespec dl;
    if (timeout_ms > 0) deadline_after(&dl, timeout_ms);
    pthread_mutex_lock(&q->mu);
    while (!q->closed && q->len == q->cap) {
        if (timeout_ms == 0 ||
            (timeout_ms > 0 && pthread_cond_timedwait(&q->not_full, &q->mu, &dl) == ETIMEDOUT)) {
            pthread_mutex_unlock(&q->mu);
            return LIP_EBUSY;
        }
        if (timeout_ms < 0) pthread_cond_wait(&q->not_full, &q->mu);
    }
    if (q->closed) {
        pthread_mutex_unlock(&q->mu);
        return LIP_ECANCELLED;
    }
    q->items[(q->head + q->len++) % q->cap] = item;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

int lip_queue_pop(lip_queue *q, void **item, int timeout_ms)
{
    struct timespec dl;
    if (timeout_ms > 0) deadline_after(&dl, timeout_ms);
    pthread_mutex_lock(&q->mu);
    while (q->len == 0) {
        if (q->closed) {
            pthread_mutex_unlock(&q->mu);
            return LIP_ECANCELLED;
        }
        if (timeout_ms == 0 ||
            (timeout_ms > 0 && pthread_cond_timedwait(&q->not_empty, &q->mu, &dl) == ETIMEDOUT)) {
            pthread_mutex_unlock(&q->mu);
            return LIP_ETIMEOUT;
        }
        if (timeout_ms < 0) pthread_cond_wait(&q->not_empty, &q->mu);
    }
    *item = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

void lip_queue_close(lip_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
}

size_t lip_queue_len(lip_queue *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->len;
    pthread_mutex_unlock(&q->mu);
    return n;
}
