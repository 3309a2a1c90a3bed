/* retry.c: the retry policy of model calls, the same for every provider: which failed
 * transfers are worth another attempt, and how long to wait before it (exponential backoff with
 * full jitter, never sooner than the server's hint, which is honoured up to a cap). Whether an
 * answer is retried at all is the provider's verdict (provider.h). */
#include "models/model_int.h"

#define BACKOFF_BASE_MS 200
#define BACKOFF_CAP_MS 20000
#define HINT_CAP_MS 120000          /* the longest Retry-After or rate-limit reset honoured */

uint64_t retry_random(uint64_t *rng)
{
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    return *rng;
}

int64_t retry_cap_hint(int64_t ms) { return ms > HINT_CAP_MS ? HINT_CAP_MS : ms; }

int64_t retry_delay_ms(int attempts, int64_t hint_ms, uint64_t *rng)
{
    int shift = attempts - 1 < 20 ? attempts - 1 : 20;
    if (shift < 0) shift = 0;
    int64_t ceiling = (int64_t)BACKOFF_BASE_MS << shift;
    if (ceiling > BACKOFF_CAP_MS) ceiling = BACKOFF_CAP_MS;
    int64_t delay = (int64_t)(retry_random(rng) % (uint64_t)(ceiling + 1));
    if (hint_ms > 0) {
        /* up to 10% more, so the records that all got the same Retry-After do not return at once */
        int64_t spread = hint_ms / 10 + 1;
        int64_t hinted = hint_ms + (int64_t)(retry_random(rng) % (uint64_t)spread);
        if (hinted > delay) delay = hinted;
    }
    return delay;
}

int retry_transport(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
        return 1;
    default:
        return 0;
    }
}
