#!/usr/bin/env bash
# Build Xen's hypervisor with shadow paging (which PV live migration needs for log-dirty;
# Debian's build leaves it out) from Debian's own source package, pinned in LOCK.
# Usage: xen-shadow.sh LOCK SRC_CACHE OUT_DIR. The source files are taken from SRC_CACHE
# or fetched from the pool of the Debian mirror the machine's apt sources name, each
# checked against its sha256; OUT_DIR gets xen (the multiboot ELF), xen-syms and config.
# Needs gcc, make, python3, flex, bison, dpkg-source, curl (see runner/install-deps.sh).
set -euo pipefail
lock=$1 src=$2 out=$3
say() { echo "xen-shadow: $*" >&2; }
ver=$(sed -n 's/^version=//p' "$lock")
frag=$(sed -n 's/^config=//p' "$lock")
[ -n "$ver" ] && [ -n "$frag" ] || { say "$lock: no version= or config= line"; exit 1; }
mkdir -p "$src" "$out"
# The mirror: the URI apt uses for bookworm main (apt-cache policy names it).
mirror=""
while read -r sum file; do
    if [ -f "$src/$file" ] && echo "$sum  $src/$file" | sha256sum -c --status; then continue; fi
    if [ -z "$mirror" ]; then
        mirror=$(apt-cache policy | awk '$3 == "bookworm/main" && $2 ~ /^https?:/ {print $2; exit}')
        [ -n "$mirror" ] || { say "no bookworm main in the machine's apt sources (apt-cache policy)"; exit 1; }
    fi
    say "fetching $file"
    curl -fsSL --retry 3 -o "$src/$file.part" "$mirror/pool/main/x/xen/${file//+/%2b}" \
        || { say "fetching $mirror/pool/main/x/xen/$file failed"; exit 1; }
    got=$(sha256sum "$src/$file.part" | cut -d' ' -f1)
    [ "$got" = "$sum" ] || { say "$file: sha256 $got, the lock says $sum"; rm -f "$src/$file.part"; exit 1; }
    mv "$src/$file.part" "$src/$file"
done < <(grep -E '^[0-9a-f]{64}  ' "$lock")
for t in flex bison make gcc dpkg-source; do
    command -v "$t" > /dev/null || { say "$t missing (runner/install-deps.sh installs it)"; exit 1; }
done
work=$(mktemp -d "$out/../build.XXXXXX")
trap 'rm -rf "$work"' EXIT
dsc=$(grep -oE '[^ ]+\.dsc$' "$lock")
dpkg-source -x "$src/$dsc" "$work/xen" > "$work/dpkg-source.log"
cd "$work/xen"
cp debian/xen-kconfig xen/.config
echo "$frag" >> xen/.config
make -s -C xen olddefconfig XEN_TARGET_ARCH=x86_64 > /dev/null
grep -qx "$frag" xen/.config || { say "olddefconfig dropped $frag"; exit 1; }
export DEB_VERSION="$ver+shadow"
make -s -C xen -j"$(nproc)" XEN_TARGET_ARCH=x86_64 > "$work/build.log" 2>&1 \
    || { tail -30 "$work/build.log" >&2; say "make -C xen failed"; exit 1; }
cp xen/xen xen/xen-syms xen/.config "$out/"
mv "$out/.config" "$out/config"
