#!/bin/sh
# Render frontend/nginx.conf (an http-level fragment) into conf.d with envsubst, limited to the
# fragment's four placeholders, then run nginx in the foreground. The image's own entrypoint is
# not relied on, so any nginx base with envsubst and a stock nginx.conf that includes
# /etc/nginx/conf.d/*.conf inside http {} works (nginx:*-alpine, Debian's nginx package).
set -eu
: "${LISTEN_PORT:?}" "${CATALOG_UPSTREAM:?}" "${RECOMMENDER_UPSTREAM:?}" "${STATIC_ROOT:?}"
envsubst '${LISTEN_PORT} ${CATALOG_UPSTREAM} ${RECOMMENDER_UPSTREAM} ${STATIC_ROOT}' \
  < /etc/movierec/nginx.conf.template > /etc/nginx/conf.d/movierec.conf
nginx -t -q
exec nginx -g 'daemon off;'
