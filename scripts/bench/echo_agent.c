/*
 * A minimal MCP echo agent that costs almost nothing, so that whatever sits in front of it is the
 * bottleneck: the gateway's own ceiling in the benchmarks (docs/benchmarks.md). C, no libraries.
 *
 *   echo_agent                               an MCP server over stdio (spawned by the gateway)
 *   echo_agent --listen PORT                 an MCP server on tcp://127.0.0.1:PORT (0: any free
 *                                            port); prints "port N" on stdout once listening
 *   echo_agent --attach HOST:PORT [--name NAME] [--max-concurrency N] [--count K] [--token T]
 *                                            attaches K connections to a gateway, each registering
 *                                            (agents/register) as NAME with the tool `echo`
 *
 * It reads whatever is there, answers every complete line of it with precomputed bytes, and
 * writes the answers of one read with one write: `initialize`, `tools/list`, `tools/call` (every
 * call gets the same result, the text the benchmarks send: "hello, agent"), `ping`, and -32601
 * for any other request. Notifications and responses (the one to agents/register) are skipped.
 *
 * It does not parse JSON: it takes the first `"id":` and the first `"method":"` of each line,
 * which is where every client of the benchmarks puts them (before `params`). Do not use it for
 * anything else.
 *
 * Build: cc -O2 -o echo_agent echo_agent.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNECTIONS 4096

static const char INITIALIZE[] =
    "\"result\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{\"tools\":{}},"
    "\"serverInfo\":{\"name\":\"echo-agent\",\"version\":\"1.0\"}}}\n";
static const char TOOLS_LIST[] =
    "\"result\":{\"tools\":[{\"name\":\"echo\",\"description\":\"Returns its text argument.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}},\"required\":[\"text\"]}}]}}\n";
static const char TOOLS_CALL[] =
    "\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hello, agent\"}],\"isError\":false}}\n";
static const char PING[] = "\"result\":{}}\n";
static const char UNKNOWN[] = "\"error\":{\"code\":-32601,\"message\":\"Method not found\"}}\n";
static const char HEAD[] = "{\"jsonrpc\":\"2.0\",\"id\":";

struct buffer {
    char *data;
    size_t length, capacity;
};

struct connection {
    int in, out;
    struct buffer input, output;
};

static void reserve(struct buffer *buffer, size_t more) {
    if (buffer->length + more <= buffer->capacity) return;
    size_t capacity = buffer->capacity ? buffer->capacity : 65536;
    while (capacity < buffer->length + more) capacity *= 2;
    buffer->data = realloc(buffer->data, capacity);
    if (!buffer->data) { perror("echo_agent: realloc"); exit(1); }
    buffer->capacity = capacity;
}

static void append(struct buffer *buffer, const char *bytes, size_t length) {
    reserve(buffer, length);
    memcpy(buffer->data + buffer->length, bytes, length);
    buffer->length += length;
}

#define APPEND_LITERAL(buffer, literal) append((buffer), (literal), sizeof(literal) - 1)

static int write_all(int fd, const char *bytes, size_t length) {
    while (length > 0) {
        ssize_t written = write(fd, bytes, length);
        if (written < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        bytes += written;
        length -= (size_t)written;
    }
    return 0;
}

/* The raw id of a line (a string with its quotes, or a number), or length 0. */
static const char *find_id(const char *line, size_t length, size_t *id_length) {
    const char *key = memmem(line, length, "\"id\":", 5);
    *id_length = 0;
    if (!key) return NULL;
    const char *cursor = key + 5, *end = line + length;
    while (cursor < end && *cursor == ' ') cursor++;
    if (cursor >= end) return NULL;
    const char *stop = cursor;
    if (*cursor == '"') {
        stop = memchr(cursor + 1, '"', (size_t)(end - cursor - 1));
        if (!stop) return NULL;
        stop++;
    } else {
        while (stop < end && (*stop == '-' || (*stop >= '0' && *stop <= '9'))) stop++;
    }
    *id_length = (size_t)(stop - cursor);
    return *id_length ? cursor : NULL;
}

static int method_is(const char *method, size_t length, const char *name) {
    size_t name_length = strlen(name);
    return length >= name_length + 1 && memcmp(method, name, name_length) == 0 && method[name_length] == '"';
}

static void answer(struct buffer *output, const char *line, size_t length) {
    const char *method = memmem(line, length, "\"method\":\"", 10);
    if (!method) return; /* a response */
    size_t id_length;
    const char *id = find_id(line, length, &id_length);
    if (!id) return; /* a notification */
    method += 10;
    size_t rest = (size_t)(line + length - method);
    APPEND_LITERAL(output, HEAD);
    append(output, id, id_length);
    append(output, ",", 1);
    if (method_is(method, rest, "tools/call")) APPEND_LITERAL(output, TOOLS_CALL);
    else if (method_is(method, rest, "ping")) APPEND_LITERAL(output, PING);
    else if (method_is(method, rest, "tools/list")) APPEND_LITERAL(output, TOOLS_LIST);
    else if (method_is(method, rest, "initialize")) APPEND_LITERAL(output, INITIALIZE);
    else APPEND_LITERAL(output, UNKNOWN);
}

/* Reads once and answers every complete line; -1 at the end of the input. */
static int serve_once(struct connection *connection) {
    reserve(&connection->input, 65536);
    ssize_t got = read(connection->in, connection->input.data + connection->input.length,
                       connection->input.capacity - connection->input.length);
    if (got < 0) return errno == EINTR || errno == EAGAIN ? 0 : -1;
    if (got == 0) return -1;
    connection->input.length += (size_t)got;
    char *start = connection->input.data, *end = start + connection->input.length;
    for (;;) {
        char *newline = memchr(start, '\n', (size_t)(end - start));
        if (!newline) break;
        answer(&connection->output, start, (size_t)(newline - start));
        start = newline + 1;
    }
    connection->input.length = (size_t)(end - start);
    memmove(connection->input.data, start, connection->input.length);
    if (connection->output.length) {
        if (write_all(connection->out, connection->output.data, connection->output.length) < 0) return -1;
        connection->output.length = 0;
    }
    return 0;
}

static void serve(struct connection *connections, int count) {
    struct pollfd fds[MAX_CONNECTIONS];
    int open = count;
    for (int i = 0; i < count; i++) fds[i] = (struct pollfd){.fd = connections[i].in, .events = POLLIN};
    while (open > 0) {
        if (count == 1) {
            if (serve_once(&connections[0]) < 0) return;
            continue;
        }
        if (poll(fds, (nfds_t)count, -1) < 0) {
            if (errno == EINTR) continue;
            perror("echo_agent: poll");
            exit(1);
        }
        for (int i = 0; i < count; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (serve_once(&connections[i]) < 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open--;
            }
        }
    }
}

static void no_delay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int listen_mode(int port) {
    int server = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(server, (struct sockaddr *)&address, sizeof address) < 0 || listen(server, 64) < 0) {
        perror("echo_agent: listen");
        return 1;
    }
    socklen_t size = sizeof address;
    getsockname(server, (struct sockaddr *)&address, &size);
    printf("port %d\n", ntohs(address.sin_port));
    fflush(stdout);
    /* One connection at a time, each served to its end; a benchmark uses one per process. */
    for (;;) {
        int fd = accept(server, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR) continue;
            perror("echo_agent: accept");
            return 1;
        }
        no_delay(fd);
        struct connection connection = {.in = fd, .out = fd};
        serve(&connection, 1);
        close(fd);
        free(connection.input.data);
        free(connection.output.data);
    }
}

static int attach_mode(const char *target, const char *name, int max_concurrency, int count, const char *token) {
    char host[256];
    const char *colon = strrchr(target, ':');
    if (!colon || (size_t)(colon - target) >= sizeof host) {
        fprintf(stderr, "echo_agent: --attach HOST:PORT\n");
        return 2;
    }
    memcpy(host, target, (size_t)(colon - target));
    host[colon - target] = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found;
    if (getaddrinfo(host, colon + 1, &hints, &found) != 0) {
        fprintf(stderr, "echo_agent: cannot resolve %s\n", target);
        return 1;
    }
    static struct connection connections[MAX_CONNECTIONS];
    char request[2048];
    int length = 0;
    if (token) {
        /* Written with the registration, not waited for: the gateway decides the registration as
         * the principal the token proves. */
        length = snprintf(request, sizeof request,
            "{\"jsonrpc\":\"2.0\",\"id\":\"auth\",\"method\":\"auth/authenticate\",\"params\":{\"token\":\"%s\"}}\n", token);
    }
    length += snprintf(request + length, sizeof request - (size_t)length,
        "{\"jsonrpc\":\"2.0\",\"id\":\"register\",\"method\":\"agents/register\",\"params\":{\"agentName\":\"%s\","
        "\"maxConcurrency\":%d,\"tools\":[{\"name\":\"echo\",\"description\":\"Returns its text argument.\","
        "\"inputSchema\":{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}},\"required\":[\"text\"]}}]}}\n",
        name, max_concurrency);
    for (int i = 0; i < count; i++) {
        int fd = socket(found->ai_family, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, found->ai_addr, found->ai_addrlen) < 0) {
            perror("echo_agent: connect");
            return 1;
        }
        no_delay(fd);
        if (write_all(fd, request, (size_t)length) < 0) {
            perror("echo_agent: write");
            return 1;
        }
        connections[i] = (struct connection){.in = fd, .out = fd};
    }
    freeaddrinfo(found);
    serve(connections, count);
    return 0;
}

int main(int argc, char **argv) {
    /* A parent may have blocked signals (a Swift program's dispatch does); SIGTERM must stop us. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_IGN);
    const char *attach = NULL, *name = "echo", *token = NULL;
    int port = -1, max_concurrency = 64, count = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--listen") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--attach") && i + 1 < argc) attach = argv[++i];
        else if (!strcmp(argv[i], "--token") && i + 1 < argc) token = argv[++i];
        else if (!strcmp(argv[i], "--name") && i + 1 < argc) name = argv[++i];
        else if (!strcmp(argv[i], "--max-concurrency") && i + 1 < argc) max_concurrency = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--count") && i + 1 < argc) count = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: echo_agent [--listen PORT | --attach HOST:PORT [--name NAME] [--max-concurrency N] [--count K] [--token T]]\n");
            return 2;
        }
    }
    if (count < 1 || count > MAX_CONNECTIONS) {
        fprintf(stderr, "echo_agent: --count from 1 to %d\n", MAX_CONNECTIONS);
        return 2;
    }
    if (attach) return attach_mode(attach, name, max_concurrency, count, token);
    if (port >= 0) return listen_mode(port);
    struct connection connection = {.in = 0, .out = 1};
    serve(&connection, 1);
    return 0;
}
