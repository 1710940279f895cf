/*
 * demo.c: on-device personalization with libprge, end to end.
 *
 * A native app on an edge device holds a small language model and a few hundred examples its
 * user labelled (here: movie-review snippets marked positive or negative). This program
 *   1. loads the model,
 *   2. loads the user's examples (JSONL: one JSON object per line),
 *   3. measures how well the untouched model does on the held-out dev examples,
 *   4. fine-tunes a LoRA adapter with P-RGE (forward passes only: no backward pass, so it
 *      needs no more memory than inference), showing progress on one updating line,
 *   5. measures again, and saves the best adapter to a file,
 *   6. answers with the personalized model: labels a few new sentences before and after.
 *
 * Everything goes through the public header prge.h. Every call returns a status; on failure
 * prge_last_error() says what went wrong, and this program prints it and exits.
 *
 * Build:  cc -std=c11 demo.c $(pkg-config --cflags --libs prge)   (or see examples/Makefile)
 * Run:    ./demo [--minutes M | --steps N] [--model F] [--train F] [--dev F] [--out F]
 *                [sentence ...]
 */
#define _POSIX_C_SOURCE 200809L /* for isatty() and fileno() */

#include <prge.h>

#include <math.h> /* NAN and isnan only: macros, no -lm needed */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Small helpers --------------------------------------------------------------------- */

/* 1 if stdout is a terminal: progress is then redrawn in place on one line ('\r' goes back
 * to its start); in a log or pipe it is printed as separate lines instead. */
static int tty = 0;
/* 1 while such a redrawn line is on screen without its newline. */
static int progress_line_open = 0;

/* Prints which call failed and the library's message for this thread, then exits.
 * (A real app would recover; a demo keeps the happy path readable.) */
static void fail(const char *call, prge_status status) {
    fflush(stdout); /* what was printed so far comes first */
    fprintf(stderr, "%serror: %s failed: %s: %s\n", progress_line_open ? "\n" : "", call,
            prge_status_string(status), prge_last_error());
    exit(1);
}

/* Checks the status of a prge call. */
#define CHECK(call)                                                                         \
    do {                                                                                    \
        prge_status status_ = (call);                                                       \
        if (status_ != PRGE_OK) fail(#call, status_);                                       \
    } while (0)

/* Reads a whole file into a NUL-terminated heap buffer (free it); *len gets its size. */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf != NULL && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (cap - n - 1 == 0) buf = realloc(buf, cap *= 2); /* grow, keeping room for the NUL */
    }
    if (buf == NULL || ferror(f)) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* "m:ss" for a number of seconds, into the caller's 32-byte buffer. */
static const char *clock_text(double seconds, char buf[32]) {
    if (!(seconds >= 0 && seconds < 1e9)) return strcpy(buf, "?:??"); /* unknown (< 0, NaN) */
    int s = (int)(seconds + 0.5);
    snprintf(buf, 32, "%d:%02d", s / 60, s % 60);
    return buf;
}

/* A non-negative number (a whole one if `whole`) from the command line, or exit with a
 * message. */
static double parse_number(const char *opt, const char *text, int whole) {
    char *end = NULL;
    double x = strtod(text, &end);
    if (end == text || *end != '\0' || !(x >= 0 && x < 1e15) || (whole && x != (long long)x)) {
        fprintf(stderr, "%s: '%s' is not a valid number\n", opt, text);
        exit(2);
    }
    return x;
}

/* ---- The task ---------------------------------------------------------------------------- */

/* The built-in "sst2" task of the trainer asks the model to continue "<sentence> It was" with
 * one of two label words (class 0 = negative, 1 = positive). To label a new sentence ourselves
 * with prge_classify, we build the same prompt and score the same words. */
static const char *const LABELS[] = {" negative", " positive"};
static const char *const LABEL_NAMES[] = {"negative", "positive"};
#define PROMPT_SUFFIX " It was"

/* New sentences "the user" writes after training (in the style of the training data:
 * lower-case, spaces around punctuation). The command line can replace them. */
static const char *const DEFAULT_SENTENCES[] = {
    "a warm , funny and surprisingly moving film .",
    "the plot is thin and the jokes fall flat .",
    "one of the most beautiful movies i have seen this year .",
    "two hours of my life i will never get back .",
    "the actors seem bored , and so was i .",
    "a small gem that rewards patience .",
};

/* Labels `sentence` with the base model (adapter NULL) or a personalized one; returns the
 * class index and writes the score margin log P(positive) - log P(negative) into *margin
 * (> 0: leans positive; the larger, the surer). */
static size_t classify(prge_model *model, const prge_adapter *adapter, const char *sentence,
                       float *margin) {
    char prompt[1024];
    if (snprintf(prompt, sizeof prompt, "%s%s", sentence, PROMPT_SUFFIX) >= (int)sizeof prompt) {
        fprintf(stderr, "sentence too long: %s\n", sentence);
        exit(1);
    }
    float logprob[2];
    size_t best;
    CHECK(prge_classify(model, adapter, prompt, LABELS, 2, logprob, &best));
    *margin = logprob[1] - logprob[0];
    return best;
}

/* ---- Measuring --------------------------------------------------------------------------- */

/* Accuracy of `adapter` (NULL: the base model) on the dev examples. A throwaway trainer
 * does the work: it is the library's evaluator, with the task's prompt and label words. */
static float dev_accuracy(prge_model *model, const prge_adapter *adapter, const char *config,
                          const char *dev, size_t dev_len, const char *what) {
    prge_trainer *evaluator = NULL;
    float accuracy = NAN, loss = NAN;
    size_t n = 0;
    if (tty) {
        printf("%s: evaluating on the dev set...", what);
        fflush(stdout);
    }
    CHECK(prge_trainer_create(model, adapter, config, &evaluator));
    CHECK(prge_trainer_add_jsonl(evaluator, PRGE_SPLIT_DEV, dev, dev_len, NULL));
    CHECK(prge_trainer_evaluate(evaluator, PRGE_SPLIT_DEV, &accuracy, &loss, &n));
    CHECK(prge_trainer_free(evaluator));
    printf("%s%s: dev accuracy %5.1f%% (%zu examples, loss %.4f)\n", tty ? "\r" : "", what,
           100.0 * accuracy, n, loss);
    return accuracy;
}

/* ---- Progress ---------------------------------------------------------------------------- */

/* Set by Ctrl-C: the next progress callback asks the trainer to stop, and the demo goes on to
 * measure and save what it has. */
static volatile sig_atomic_t interrupted = 0;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

/* What the progress line remembers between steps. */
struct progress_state {
    float dev_acc;  /* latest dev accuracy seen (at first: the "before" one) */
    float best_acc; /* best dev accuracy so far */
};

/* Called by prge_trainer_train after every step. Returns non-zero to stop training. */
static int on_progress(const prge_progress *p, void *user_data) {
    struct progress_state *st = user_data;
    if (p->evaluated) st->dev_acc = p->dev_accuracy;
    st->best_acc = p->best_dev_accuracy;

    char steps[48], dev[48] = "dev   --  ", eta[32], elapsed[32];
    if (p->total_steps > 0)
        snprintf(steps, sizeof steps, "%llu/%llu", (unsigned long long)p->step,
                 (unsigned long long)p->total_steps);
    else
        snprintf(steps, sizeof steps, "%llu", (unsigned long long)p->step);
    if (!isnan(st->dev_acc))
        snprintf(dev, sizeof dev, "dev %5.1f%% (best %5.1f%%)", 100.0 * st->dev_acc,
                 100.0 * st->best_acc);

    /* On a terminal, redraw the line every step; in a log, print one line per evaluation,
     * every 10 steps and at the last step, so the log stays short. */
    if (tty || p->evaluated || p->step % 10 == 0 || p->step == p->total_steps) {
        printf("%s  step %-9s loss %.4f  %s  elapsed %s  ETA %s", tty ? "\r" : "", steps,
               p->train_loss, dev, clock_text(p->elapsed_s, elapsed), clock_text(p->eta_s, eta));
        fputs(tty ? "   " : "\n", stdout); /* spaces: wipe the tail of a longer previous line */
        fflush(stdout);
        progress_line_open = tty;
    }
    return interrupted;
}

/* ---- Main ---------------------------------------------------------------------------------- */

static void usage(const char *argv0) {
    printf("usage: %s [options] [sentence ...]\n"
           "  --model F     GGUF model (default models/SmolLM2-135M-Instruct.Q4_1.gguf)\n"
           "  --train F     the user's examples, JSONL (default examples/data/train.jsonl)\n"
           "  --dev F       held-out examples to measure on (default examples/data/dev.jsonl)\n"
           "  --minutes M   training time budget (default 3, unless --steps is given)\n"
           "  --steps N     training step budget (with --minutes: whichever ends first)\n"
           "  --out F       where to save the best adapter (default demo-adapter.gguf)\n"
           "  sentence ...  sentences to label before and after training (default: six examples)\n"
           "Ctrl-C during training stops it early; the demo then measures and saves what it has.\n",
           argv0);
}

int main(int argc, char **argv) {
    const char *model_path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    const char *train_path = "examples/data/train.jsonl";
    const char *dev_path = "examples/data/dev.jsonl";
    const char *out_path = "demo-adapter.gguf";
    double minutes = 0;
    unsigned long long steps = 0;
    const char *const *sentences = DEFAULT_SENTENCES;
    int n_sentences = (int)(sizeof DEFAULT_SENTENCES / sizeof DEFAULT_SENTENCES[0]);

    /* Options first, then any sentences. */
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        const char *opt = argv[i], *val = argv[i + 1]; /* argv[argc] is NULL */
        if (strcmp(opt, "--help") == 0) {
            usage(argv[0]);
            return 0;
        }
        if (val == NULL) {
            fprintf(stderr, "%s needs a value (see --help)\n", opt);
            return 2;
        }
        if (strcmp(opt, "--model") == 0) model_path = val;
        else if (strcmp(opt, "--train") == 0) train_path = val;
        else if (strcmp(opt, "--dev") == 0) dev_path = val;
        else if (strcmp(opt, "--out") == 0) out_path = val;
        else if (strcmp(opt, "--minutes") == 0) minutes = parse_number(opt, val, 0);
        else if (strcmp(opt, "--steps") == 0) steps = (unsigned long long)parse_number(opt, val, 1);
        else {
            fprintf(stderr, "unknown option %s (see --help)\n", opt);
            return 2;
        }
    }
    if (i < argc) {
        sentences = (const char *const *)(argv + i);
        n_sentences = argc - i;
    }
    if (minutes == 0 && steps == 0) minutes = 3;

    tty = isatty(fileno(stdout));

    /* The library must match the header we compiled against. */
    if (prge_abi_version() != PRGE_ABI_VERSION) {
        fprintf(stderr, "libprge ABI %d, but prge.h is ABI %d\n", (int)prge_abi_version(),
                PRGE_ABI_VERSION);
        return 1;
    }

    /* 1. The model: memory-mapped, so loading is quick and it is shared with the page cache. */
    prge_model *model = NULL;
    CHECK(prge_model_load(model_path, NULL, &model));
    size_t n_layer = 0, n_embd = 0;
    CHECK(prge_model_n_layer(model, &n_layer));
    CHECK(prge_model_n_embd(model, &n_embd));
    printf("model: %s (%zu layers, width %zu)\n", model_path, n_layer, n_embd);

    /* The trainer's config: the library's default recipe, only the task and the budget set
     * here (so when the recipe improves, the demo follows). "steps" is the planned total, which
     * a learning-rate schedule needs; "minutes" the time budget. */
    char config[256];
    int len = snprintf(config, sizeof config, "{\"task\": \"sst2\"");
    if (steps > 0) len += snprintf(config + len, sizeof config - len, ", \"steps\": %llu", steps);
    if (minutes > 0)
        len += snprintf(config + len, sizeof config - len, ", \"minutes\": %g", minutes);
    snprintf(config + len, sizeof config - len, "}");

    /* 2. The user's examples: the files are passed to the library as they are. */
    size_t train_len = 0, dev_len = 0, n_train = 0, n_dev = 0;
    char *train = read_file(train_path, &train_len);
    char *dev = read_file(dev_path, &dev_len);
    prge_trainer *trainer = NULL;
    CHECK(prge_trainer_create(model, NULL, config, &trainer));
    CHECK(prge_trainer_add_jsonl(trainer, PRGE_SPLIT_TRAIN, train, train_len, &n_train));
    CHECK(prge_trainer_add_jsonl(trainer, PRGE_SPLIT_DEV, dev, dev_len, &n_dev));
    printf("examples: %zu to train on (%s), %zu to measure on (%s)\n", n_train, train_path, n_dev,
           dev_path);
    printf("trainer config: %s (everything else: the library's defaults)\n\n", config);

    /* 3. Before: the base model, no adapter. */
    float before = dev_accuracy(model, NULL, config, dev, dev_len, "before");

    /* 4. Train. The budget: steps and/or seconds, whichever ends first. */
    if (steps > 0) printf("\ntraining for %llu steps", steps);
    else printf("\ntraining for %g minutes", minutes);
    printf(" (Ctrl-C stops early and keeps what was learned)\n");
    struct progress_state progress = {before, before};
    signal(SIGINT, on_sigint);
    prge_status status = prge_trainer_train(trainer, steps, minutes * 60, on_progress, &progress);
    signal(SIGINT, SIG_DFL);
    if (progress_line_open) printf("\n");
    progress_line_open = 0;
    if (status == PRGE_ERR_CANCELLED) printf("stopped by Ctrl-C\n");
    else CHECK(status);
    uint64_t steps_done = 0;
    CHECK(prge_trainer_n_steps(trainer, &steps_done));
    printf("%llu steps done\n\n", (unsigned long long)steps_done);

    /* 5. After: the best adapter by dev loss (what a real app would keep), measured the
     *    same way as before, then saved (atomically: a crash leaves the old file or the new). */
    prge_adapter *adapter = NULL;
    CHECK(prge_trainer_get_adapter(trainer, PRGE_ADAPTER_BEST, &adapter));
    float after = dev_accuracy(model, adapter, config, dev, dev_len, "after ");
    printf("change: %+.1f points of accuracy\n", 100.0 * (after - before));
    size_t n_params = 0;
    CHECK(prge_adapter_n_params(adapter, &n_params));
    CHECK(prge_adapter_save(adapter, out_path));
    printf("saved the adapter (%zu trained parameters) to %s\n\n", n_params, out_path);

    /* 6. Answer with the personalized model: the same sentences, without and with the adapter.
     *    (To reuse the adapter later: prge_adapter_load(model, path, &adapter).) */
    printf("the personalized model answers (margin: log P(positive) - log P(negative)):\n");
    printf("  %-19s %-19s %s\n", "before", "after", "sentence");
    for (int k = 0; k < n_sentences; k++) {
        float m0 = 0, m1 = 0;
        size_t c0 = classify(model, NULL, sentences[k], &m0);
        size_t c1 = classify(model, adapter, sentences[k], &m1);
        printf("  %-8s (%+6.2f)   %-8s (%+6.2f)   %s\n", LABEL_NAMES[c0], m0, LABEL_NAMES[c1], m1,
               sentences[k]);
    }

    CHECK(prge_adapter_free(adapter));
    CHECK(prge_trainer_free(trainer));
    CHECK(prge_model_free(model));
    free(train);
    free(dev);
    return 0;
}
