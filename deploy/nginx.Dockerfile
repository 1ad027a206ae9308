# The load balancer's image built from Debian's nginx, for machines that cannot pull
# nginx:*-alpine from Docker Hub (make image-test builds it; docker-compose.yml takes it through
# ALGOSPEAK_NGINX_IMAGE). deploy/nginx.conf is mounted as /etc/nginx/conf.d/default.conf, as
# with the upstream image.
#
#   docker build --network=host -f deploy/nginx.Dockerfile -t algospeak-nginx deploy
ARG BASE_IMAGE=algospeak-python:3.11-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 8000
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
