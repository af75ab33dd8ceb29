#!/usr/bin/env bash
# Regenerates the Go code for every .proto under api/.
#   scripts/proto.sh            write next to the .proto files (make proto)
#   scripts/proto.sh --check    generate into a temporary tree and fail if the
#                               committed code differs (make proto-check)
# protoc comes from Debian's protobuf-compiler; the two plugins are installed at
# the pinned versions below into .tools/ (go install through the module proxy).
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_VERSION="3.21.12"
PROTOC_GEN_GO_VERSION="v1.36.12"
PROTOC_GEN_GO_GRPC_VERSION="v1.6.2"
TOOLS="$PWD/.tools"

if ! command -v protoc >/dev/null 2>&1; then
  echo "proto: protoc not found; install Debian's protobuf-compiler (apt-get install protobuf-compiler)" >&2
  exit 1
fi
have=$(protoc --version | awk '{print $2}')
if [ "$have" != "$PROTOC_VERSION" ]; then
  echo "proto: protoc $have found, $PROTOC_VERSION expected (generated headers name the version)" >&2
  exit 1
fi

plugin() { # name module version
  local bin="$TOOLS/$1"
  if [ ! -x "$bin" ] || ! "$bin" --version 2>&1 | grep -q -- "${3#v}"; then
    GOBIN="$TOOLS" go install "$2@$3"
  fi
}
plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

mapfile -t files < <(find api -name '*.proto' | sort)
gen() { # outdir
  PATH="$TOOLS:$PATH" protoc -I . \
    --go_out="$1" --go_opt=paths=source_relative \
    --go-grpc_out="$1" --go-grpc_opt=paths=source_relative \
    "${files[@]}"
}

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  gen "$tmp"
  stale=0
  while IFS= read -r f; do
    if ! cmp -s "$tmp/$f" "$f"; then
      echo "proto-check: $f is stale or missing; run make proto" >&2
      stale=1
    fi
  done < <(cd "$tmp" && find . -name '*.go' | sed 's|^\./||' | sort)
  # Generated files whose .proto is gone are stale too.
  while IFS= read -r f; do
    [ -f "$tmp/$f" ] || { echo "proto-check: $f has no .proto any more; run make proto" >&2; stale=1; }
  done < <(find api -name '*.pb.go' | sort)
  [ "$stale" = 0 ] && echo "proto-check: generated code is up to date"
  exit "$stale"
fi
gen .
