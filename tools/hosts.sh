#!/usr/bin/env bash
# Test hosts on this box: network namespaces on a bridge, each with its own /dev/shm and machine id
# (root needed; docs/scale.md). For example:
#   tag=$(tools/hosts.sh up a b)                   # add --no-multicast to block multicast (nftables)
#   tools/hosts.sh run "$tag" a tools/krystal-env install/krystal/lib/krystal/video_source --ros-args -p compressed:=true &
#   tools/hosts.sh run "$tag" b tools/krystal-env install/krystal/lib/krystal/ascii_renderer --ros-args -p image_transport:=compressed
#   tools/hosts.sh down "$tag"                     # stops what runs there, removes everything
# `clean` removes hosts left by a killed run. Implementation: src/krystal/hosts.py.
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/krystal-env" python -m krystal.hosts "$@"
