#!/usr/bin/env bash
# Test hosts on this box (network namespaces on a bridge; root needed), e.g.:
#   tag=$(tools/hosts.sh up a b)
#   tools/hosts.sh run "$tag" a tools/krystal-env ros2 ... | video_source --ros-args -p compressed:=true &
#   tools/hosts.sh run "$tag" b tools/krystal-env ascii_renderer --ros-args -p image_transport:=compressed
#   tools/hosts.sh down "$tag"
# See src/krystal/hosts.py. `clean` removes hosts left by a killed run.
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/krystal-env" python -m krystal.hosts "$@"
