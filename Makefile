# runnel: build, test, demo, bench. Read top to bottom; `make help` lists the targets.

CC      ?= cc
PKGS    := lua5.4 libcurl jansson libcrypto libssl sqlite3 libmicrohttpd avro-c libpq $(if $(WITHOUT_KAFKA),,rdkafka)
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE
CPPFLAGS_ALL = $(WARN) $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -Iruntime
LDLIBS_ALL   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcsv -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# Debian packages the build, the tests and the demo need (checked by `make deps`).
DEB_PACKAGES := gcc make libc6-dev pkg-config curl kcat jq procps \
                liblua5.4-dev libcurl4-openssl-dev librdkafka-dev libcsv-dev \
                libjansson-dev libmicrohttpd-dev libssl-dev tzdata \
                postgresql-15 libpq-dev python3 python3-avro libavro-dev \
                libsqlite3-dev sqlite3 python3-prometheus-client nghttp2-server nghttp2-proxy openssl util-linux
# Vega for the pages the runner writes (compiled in, see "assets" below).
DEB_PACKAGES += libjs-vega
# Only `make test` needs these (chromium is large): the report test opens a page in it, whose
# fonts (the word cloud measures its words) must be there without apt's recommends.
TEST_PACKAGES := chromium fonts-dejavu-core lua5.4
# The dashboard's test drives Chromium with npm's puppeteer-core (tests/dashboard/package-lock.json).
# A Node.js from NodeSource (its own nodejs package) ships npm inside and conflicts with Debian's
# npm package, so npm is asked of apt only when no npm command is there.
TEST_PACKAGES += nodejs $(if $(shell command -v npm 2>/dev/null),,npm)

# Sources are found in runtime/'s folders (see runtime/README.md). A plugin whose library is
# missing can be left out: WITHOUT_KAFKA=1 builds without source.kafka and sink.kafka.
RUNTIME_SRC  := $(shell find runtime -name '*.c' | sort)
ifdef WITHOUT_KAFKA
RUNTIME_SRC  := $(filter-out runtime/sources/kafka/% runtime/sinks/kafka.c,$(RUNTIME_SRC))
CPPFLAGS_ALL += -DRUNNEL_WITHOUT_KAFKA
endif
RUNTIME_LIB  := $(filter-out runtime/main.c,$(RUNTIME_SRC))
# build/gen/serve_assets.c, the files compiled into the runner (see "assets" below), is one more
# object of the runtime.
OBJ          := $(RUNTIME_SRC:runtime/%.c=build/obj/%.o) build/obj/gen/serve_assets.o
LIB_OBJ      := $(RUNTIME_LIB:runtime/%.c=build/obj/%.o) build/obj/gen/serve_assets.o
ASAN_OBJ     := $(RUNTIME_SRC:runtime/%.c=build/asan/%.o) build/asan/gen/serve_assets.o
ASAN_LIB_OBJ := $(RUNTIME_LIB:runtime/%.c=build/asan/%.o) build/asan/gen/serve_assets.o
UNIT_SRC     := $(wildcard tests/unit/test_*.c)
UNIT_BIN     := $(UNIT_SRC:tests/unit/%.c=build/unit/%)
TOOLS        := bin/model-server bin/gen-reviews bin/kafka-dev bin/schema-registry-dev bin/es-dev

.PHONY: all deps test test-fast demo demo-pipeline bench fuzz clean help asan install

all: bin/runnel $(TOOLS)

help:
	@echo "make          build bin/runnel and the tools"
	@echo "make deps     install missing Debian packages (apt, as root)"
	@echo "make test     install, build, run every test (also under ASan+UBSan)"
	@echo "make demo     install, build, start the model server, rate the sample reviews"
	@echo "make demo-pipeline  the seed pipeline: CSV -> Avro topic -> model -> topic -> ES + PostgreSQL -> report"
	@echo "make bench    the performance benchmark"
	@echo "make fuzz     run each fuzz target for a short time"
	@echo "make install  the runner, its Lua helpers, the man page, a systemd unit (PREFIX, DESTDIR)"
	@echo "make clean    remove build outputs"

# ---- dependencies -------------------------------------------------------------------
# make fuzz needs clang with libFuzzer on top.
FUZZ_PACKAGES := clang libclang-rt-14-dev

deps:
	@missing=""; for p in $(DEB_PACKAGES) $(EXTRA_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "make deps: installing$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || { echo "make deps: apt-get failed; run: apt-get install -y$$missing" >&2; exit 1; }; \
	else \
	  echo "make deps: missing packages; run as root: apt-get install -y$$missing" >&2; exit 1; \
	fi

# ---- the runner ---------------------------------------------------------------------
bin/runnel: $(OBJ)
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $(OBJ) $(LDLIBS_ALL)

# -MMD -MP: each object's header dependencies in a .d file beside it (included below).
build/obj/%.o: runtime/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CPPFLAGS_ALL) $(CFLAGS) -MMD -MP -c -o $@ $<

# The same runner built with AddressSanitizer and UndefinedBehaviorSanitizer.
asan: build/asan/runnel
build/asan/runnel: $(ASAN_OBJ)
	$(CC) $(SAN) -g -O1 -o $@ $(ASAN_OBJ) $(LDLIBS_ALL)

build/asan/%.o: runtime/%.c
	@mkdir -p $(dir $@)
	@echo "  CC asan $<"
	@$(CC) $(CPPFLAGS_ALL) $(SAN) -g -O1 -MMD -MP -c -o $@ $<

-include $(OBJ:.o=.d) $(ASAN_OBJ:.o=.d) $(UNIT_BIN:=.d)

# ---- assets compiled into the runner (runtime/serve/assets.h) ------------------------
# Pages the runner writes (runnel report; the dashboard) inline these, so they open with no
# network. Vega comes from Debian's libjs-vega, which ships one UMD file per module rather than
# the vega.min.js bundle: build/gen/vega.js wraps each module for the loader in
# runtime/serve/assets/vega-prelude.js and ends with vega-index.js, which joins them into one
# `vega` object. The modules are those the report's charts need (arcs, text, rects, the pie
# and wordcloud transforms, the SVG renderer); add one here when a chart needs more.
VEGA_DIR     := /usr/share/javascript/vega
VEGA_MODULES := vega-util vega-canvas vega-loader vega-format vega-time vega-scale vega-scenegraph \
                vega-dataflow vega-expression vega-event-selector vega-statistics vega-selection \
                vega-functions vega-runtime vega-parser vega-view vega-view-transforms vega-encode \
                vega-transforms vega-wordcloud
SERVE_ASSETS := vega.js=build/gen/vega.js \
                report.js=runtime/serve/assets/report.js report.css=runtime/serve/assets/report.css \
                dashboard.html=runtime/serve/assets/dashboard.html dashboard.js=runtime/serve/assets/dashboard.js \
                dashboard.css=runtime/serve/assets/dashboard.css \
                jobtest.lua=runtime/engine/jobtest.lua

$(VEGA_DIR)/%.min.js:
	@echo "$@ is missing: install Debian's libjs-vega (make deps)" >&2; exit 1

build/gen/vega.js: runtime/serve/assets/vega-prelude.js runtime/serve/assets/vega-index.js \
                   $(VEGA_MODULES:%=$(VEGA_DIR)/%.min.js) Makefile
	@mkdir -p $(dir $@)
	@echo "  GEN     $@ (libjs-vega $$(dpkg-query -W -f='$${Version}' libjs-vega 2>/dev/null))"
	@{ printf '/* Vega from Debian libjs-vega %s: %s */\n' \
	     "$$(dpkg-query -W -f='$${Version}' libjs-vega 2>/dev/null)" "$(VEGA_MODULES)"; \
	   cat runtime/serve/assets/vega-prelude.js; \
	   for m in $(VEGA_MODULES); do \
	     printf 'rnVega.define("%s", function (exports, module, require) {\n' $$m; \
	     sed '/^\/\/# sourceMappingURL=/d' $(VEGA_DIR)/$$m.min.js; \
	     printf '\n});\n'; \
	   done; \
	   cat runtime/serve/assets/vega-index.js; } >$@.tmp && mv $@.tmp $@

build/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) -o $@ $<

build/gen/serve_assets.c: build/tools/embed $(foreach a,$(SERVE_ASSETS),$(lastword $(subst =, ,$(a)))) Makefile
	@mkdir -p $(dir $@)
	@echo "  EMBED   $(foreach a,$(SERVE_ASSETS),$(firstword $(subst =, ,$(a))))"
	@build/tools/embed $@ $(SERVE_ASSETS)

build/obj/gen/serve_assets.o: build/gen/serve_assets.c
	@mkdir -p $(dir $@)
	@$(CC) $(CPPFLAGS_ALL) $(CFLAGS) -MMD -MP -c -o $@ $<

build/asan/gen/serve_assets.o: build/gen/serve_assets.c
	@mkdir -p $(dir $@)
	@$(CC) $(CPPFLAGS_ALL) $(SAN) -g -O1 -MMD -MP -c -o $@ $<

# ---- tools --------------------------------------------------------------------------
# The providers' dialects are a file each (tools/model_server_dialect.h); Bedrock's checks SigV4
# signatures with the runtime's own signer (runtime/core/sigv4.c, checked by AWS's test suite).
# OpenAI's batch API and the per-minute quotas are files of their own too (tools/model_server.h).
MODEL_SERVER_DIALECTS := tools/model_server_dialect.c tools/model_server_azure.c tools/model_server_anthropic.c \
                         tools/model_server_bedrock.c tools/model_server_google.c tools/model_server_ollama.c \
                         tools/model_server_http.c tools/model_server_responses.c tools/model_server_batch.c tools/model_server_quota.c \
                         tools/standin.c
MODEL_SERVER_RUNTIME  := runtime/core/sigv4.c runtime/core/sha256.c runtime/core/err.c runtime/core/buf.c \
                         runtime/core/log.c runtime/core/secret.c
bin/model-server: tools/model-server.c $(MODEL_SERVER_DIALECTS) $(MODEL_SERVER_RUNTIME) tools/model_server_dialect.h \
                  tools/model_server.h tools/lexicon.h tools/standin.h
	@mkdir -p bin
	$(CC) $(WARN) $(CFLAGS) -Iruntime -o $@ tools/model-server.c $(MODEL_SERVER_DIALECTS) $(MODEL_SERVER_RUNTIME) \
	  $(shell pkg-config --cflags --libs libmicrohttpd jansson libcrypto) -lpthread -lm

bin/gen-reviews: tools/gen-reviews.c tools/lexicon.h
	@mkdir -p bin
	$(CC) $(WARN) $(CFLAGS) -o $@ $< -lm

bin/kafka-dev: tools/kafka-dev.c
	@mkdir -p bin
	$(CC) $(WARN) $(CFLAGS) -o $@ $< $(shell pkg-config --cflags --libs rdkafka)

# The stand-ins for services that cannot be installed here share tools/standin.c (the HTTP
# server on libmicrohttpd, the buffer, the options table).
STANDIN_LIBS := $(shell pkg-config --cflags --libs libmicrohttpd jansson) -lpthread

bin/schema-registry-dev: tools/schema-registry.c tools/avro_schema.c tools/avro_schema.h tools/standin.c tools/standin.h
	@mkdir -p bin
	$(CC) $(WARN) $(CFLAGS) -o $@ tools/schema-registry.c tools/avro_schema.c tools/standin.c $(STANDIN_LIBS)

bin/es-dev: tools/es-dev.c tools/es_index.c tools/es_index.h tools/standin.c tools/standin.h
	@mkdir -p bin
	$(CC) $(WARN) $(CFLAGS) -o $@ tools/es-dev.c tools/es_index.c tools/standin.c $(STANDIN_LIBS)

# ---- tests --------------------------------------------------------------------------
# Unit tests are C programs linked with the runtime (without main.c), built with sanitizers.
build/unit/%: tests/unit/%.c $(ASAN_LIB_OBJ)
	@mkdir -p build/unit
	$(CC) $(CPPFLAGS_ALL) $(SAN) -g -O1 -MMD -MP -MF $@.d -o $@ $< $(ASAN_LIB_OBJ) $(LDLIBS_ALL)

test:
	@$(MAKE) --no-print-directory deps EXTRA_PACKAGES="$(TEST_PACKAGES)"
	@$(MAKE) --no-print-directory all build/asan/runnel $(UNIT_BIN)
	@bash tests/run.sh

# ---- install ------------------------------------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=staging]: the runner (the dashboard and the report's
# files are compiled into it), the Lua helpers scripts/ (found at ../share/runnel/scripts from
# the binary), the manual page and an example systemd unit for runnel serve.
PREFIX  ?= /usr/local
DESTDIR ?=
install: bin/runnel
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/runnel/scripts $(DESTDIR)$(PREFIX)/share/doc/runnel/examples
	install -m 755 bin/runnel $(DESTDIR)$(PREFIX)/bin/runnel
	cd scripts && find . -type d -exec install -d "$(abspath $(DESTDIR)$(PREFIX))/share/runnel/scripts/{}" \; && \
	  find . -type f -name '*.lua' -exec install -m 644 {} "$(abspath $(DESTDIR)$(PREFIX))/share/runnel/scripts/{}" \;
	install -m 644 doc/runnel.1 $(DESTDIR)$(PREFIX)/share/man/man1/runnel.1
	install -m 644 doc/runnel-serve.service $(DESTDIR)$(PREFIX)/share/doc/runnel/examples/runnel-serve.service

# ---- demo ---------------------------------------------------------------------------
demo: deps
	@$(MAKE) --no-print-directory all
	@bash tools/demo.sh

# The seed pipeline, every step a runnel job against local servers on free ports (Kafka, the
# Schema Registry, Elasticsearch, PostgreSQL 15, the model); PIPELINE_ROWS=N sends N reviews.
demo-pipeline: deps
	@$(MAKE) --no-print-directory all
	@bash tools/demo-pipeline.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@bash tools/bench.sh

# Fuzz targets (libFuzzer, clang): the CSV source, the model answer parser, the prompt
# renderer, JSON, the report's phrases. FUZZ_SECONDS per target (default 30).
fuzz:
	@$(MAKE) --no-print-directory deps EXTRA_PACKAGES="$(FUZZ_PACKAGES)"
	@$(MAKE) --no-print-directory all
	@bash tools/fuzz.sh

clean:
	rm -rf build bin out .runnel
