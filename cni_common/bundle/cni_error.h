/*
 * Failing as a CNI plugin, for the suite's two C programs (launcher.c, runner.c).
 *
 * stdout belongs to the CNI protocol: whatever goes wrong before Python runs is reported there as a CNI error
 * (code 999, "other"), with the same text on stderr for logs, and the process exits 1. Define ERROR_SOURCE
 * (the prefix naming the program) before including this file.
 */
#ifndef CNI_SUITE_CNI_ERROR_H
#define CNI_SUITE_CNI_ERROR_H

#include <stdio.h>
#include <stdlib.h>

/* A JSON string body: paths and strerror() texts may hold quotes, backslashes or control characters. */
static void put_json_text(const char *text) {
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (*c == '"' || *c == '\\') printf("\\%c", *c);
        else if (*c < 0x20) printf("\\u%04x", *c);
        else putchar(*c);
    }
}

static void die(const char *what, const char *detail) {
    fprintf(stderr, ERROR_SOURCE ": %s: %s\n", what, detail);
    printf("{\"cniVersion\": \"1.1.0\", \"code\": 999, \"msg\": \"" ERROR_SOURCE ": ");
    put_json_text(what);
    printf("\", \"details\": \"");
    put_json_text(detail);
    printf("\"}\n");
    fflush(stdout);
    exit(1);
}

#endif
