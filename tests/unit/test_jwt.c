/* test_jwt.c: RS256 JSON Web Tokens. RS256 (RSASSA-PKCS1-v1_5) is deterministic, so a fixed
 * key and claims give one token: the expected one was made with the openssl command line
 * (`openssl dgst -sha256 -sign`), independently of the code under test. The key is a test key
 * made for this file and used nowhere else. Plus base64url edge cases and refused keys. */
#include <string.h>

#include "core/jwt.h"
#include "check.h"

static const char test_key[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCsDvUGlbeP2Ja5\n"
    "qrZSiwuw4ClvX/brxvbqI6yoB45QM9FZQ4bzjW5Qkv18seH10cAK4wiyXzzY9MXy\n"
    "Pboxv1wVyuQ9H/SvN9zLoX/yHDOAh2j1/pW3u6nNKA2q7bCZX/URaoVgahEo3nlj\n"
    "koNUQuSOEWasTJrzy6OysQ2Ehp7Ap1ogJ3pe6Roba4UB76m5tAUaJC5wr45rrKDo\n"
    "FMhlSY0v4jh4PXurCizglIQYdnK4f/T36E+vXqXm601GxehpS4kbZiIOuHkKpVHH\n"
    "yca/I8DiTX0TohBe/1n57NffG6lqPc2Yboi7nm//zEEZoQ20XRi/g2g/+czpPVkz\n"
    "gQCzKZGrAgMBAAECggEACVSUwgMLq+GQGY/FbB19pN11v/0IhrRXDOuFxzqvcbb5\n"
    "NLfzkSKSywxXVbeypPBa4dxBZ6UVgFv3819frIrW3EN0V6XI0K6Oqu8lYT1ZRBP+\n"
    "bk1/8KMkAU9gdQhrDWcTygwodnShJCWBQuk6PIR5PT16OICEiJ9ssvZINm8XHAdy\n"
    "QpPkr51AuUcpw25X8H5xd+kXSaWk2o2LbKPIcuKb5rE7cllVnmvkQOuhkVoJgMvm\n"
    "eLSqPMLkakXRW4cWcyERnyp9cvWoZVyHu8UGLSK5hE6EDKN4sby9RQPAaCWQnnBV\n"
    "fgRHPRTZVk5SrG7RbpPEP9nOTHvlZvkl0mdscp8LYQKBgQDXKVRwzVDavI9IB8vo\n"
    "d5c5L+M47t+0gLyshqeng2T4h+Im0+LEkD0TxFX36kljnZZPu6ha3+HK9V5JsELP\n"
    "/yHy46BKd+k/ooeN7Omo2AMu1HcH2y6Nbkix/NcOdHjOoYE02LJhQ02jNVsUu6WB\n"
    "UVkUfeVRgijPgpPyEkIzh20hywKBgQDMt0GrJDKSuNtza0Ni9pYywZVCSepfByIn\n"
    "rbS26g1sLiKsscWumjfYieHe1MB/Czh0MIK8EfHKod2vaK7qtuE/eUEjQk63ZwRf\n"
    "7ZjutLk4gNLPg6nuo1fdYOabaDJz23LWEk4O0y2xpLGGIR6gQmL43eBZHFVKPLwx\n"
    "saUjdGfToQKBgGuUPqQoBEVaAkoBm/Kf2Py+9N2CkleuBqg8q5cWG2YoiurfBoNB\n"
    "m0hG4rUSb59fK8iyC3tkdYEFLh+qAb390vue1IZnbjhjC2PrEOlbGDxR/zHuZVhR\n"
    "zAcyZFTV55FpLzE9J/N5s1fnVaMIL7h49BFK4V3ftogKwe5HMtKQ5AABAoGBAMws\n"
    "Hael43aoPd7gZQYHr4eRwN6rP8BlKfBu8+TWjGqPnO+mIeXhU794zThj8lUDCNwB\n"
    "IfKW5xNU2ve+LW5U1VRsB8Y1tLKAYUGXg8bXoj+zZA2pYEtsyA44PedTRbZ9cQwG\n"
    "l6l7f4BEJPYEhDoL3BAfokjd1EbFSmE5rt0slPzhAoGATceb3NeUidCS2RomI5Ng\n"
    "mJfswYM4E/NtZqnimkOS88wxw1/7DtnGdbsY8JIbDhWh+iVezH3Hya+YEktaTkQz\n"
    "wU4cV5B67qEdwxaWjt+JYYIjfKO8hYKGLH06WAita2y3O/RkU3DkSQr0NOQwGGZy\n"
    "gKbgWzlq04CbKi28Ou9oA5I=\n"
    "-----END PRIVATE KEY-----\n";

static const char claims[] =
    "{\"iss\":\"runnel-test@example.iam.gserviceaccount.com\",\"scope\":\"https://www.googleapis.com/auth/cloud-platform\","
    "\"aud\":\"https://oauth2.googleapis.com/token\",\"iat\":1700000000,\"exp\":1700003600}";

static const char expected[] = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJydW5uZWwtdGVzdEBleGFtcGxlLmlhbS5nc2VydmljZWFjY291bnQuY29tIiwic2NvcGUiOiJodHRwczovL3d3dy5nb29nbGVhcGlzLmNvbS9hdXRoL2Nsb3VkLXBsYXRmb3JtIiwiYXVkIjoiaHR0cHM6Ly9vYXV0aDIuZ29vZ2xlYXBpcy5jb20vdG9rZW4iLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMH0.mmGg_-43NjobUI0AOMEWzbZ8ZDnhPyUd1xBvqG3zKFeYHy7oVzGmvxKPaGXQJG-KuTeT6sDKWOASDyyknji03zduxBB9ekUKIjyWT5DZ1sE-3L__0nmB4GTL3OYtXt_4JCbmD7_h24M-X8OJ8E62Y8DcVc8z-TRFwWkXr0nd8i-PhcbfL-PN3_MUAJhLzOQp3cgGRDAp-FNEnsuBjD9gnNb3sEfAOYnydRZYpe9EYs0XV7g4pSfNatDapsJzRMY-2tevjrqks7hlx_kAL-oQm_ZTsMcWW6BPGu-tzJnfB9ZBMRt1OVJLMifkQ4DqsKAsSh4Hw_GKMUciYBtBbER6SA";

int main(void)
{
    struct buf b;
    buf_init(&b);
    base64url_put(&b, "", 0);
    CHECK(b.len == 0, "empty");
    base64url_put(&b, "f", 1);
    base64url_put(&b, "fo", 2);
    base64url_put(&b, "foo", 3);
    base64url_put(&b, "\xfb\xff", 2);
    CHECK(b.data && !strcmp(b.data, "ZgZm8Zm9v-_8"), "base64url without padding, - and _: %s", b.data);
    buf_clear(&b);

    struct rn_err err;
    CHECK(jwt_sign_rs256(test_key, claims, &b, &err) == 0, "sign: %s", err.msg);
    CHECK(b.data && !strcmp(b.data, expected), "the token openssl made:\n want %s\n got  %s", expected, b.data);

    buf_clear(&b);
    CHECK(jwt_sign_rs256("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", claims, &b, &err) == -1 &&
              strstr(err.msg, "private key: not a PEM private key"),
          "a broken key is refused: %s", err.msg);
    CHECK(b.len == 0, "nothing appended on failure");
    static const char ec_key[] =
        "-----BEGIN EC PRIVATE KEY-----\n"
        "MHcCAQEEIBO1Qg/N9sX6t7d4FhMBOCTMz6P1vQ3I6Q/4LW/1xmEeoAoGCCqGSM49\n"
        "AwEHoUQDQgAEPrcDFdCuBwMlhNbNpOCBgEEeixrPoNwu611HMPilOnLrSlT0qiO0\n"
        "f/jrf27M78sEo3CtjhTZYfvmvuKg7it4pQ==\n"
        "-----END EC PRIVATE KEY-----\n";
    CHECK(jwt_sign_rs256(ec_key, claims, &b, &err) == -1 && strstr(err.msg, "RS256 needs an RSA key"),
          "an EC key is refused: %s", err.msg);
    buf_free(&b);
    return check_report("test_jwt");
}
