#!/usr/bin/env bash
# Put Bioconductor's Gene Ontology annotation files (org.Hs.eg.sqlite, GO.sqlite) where
# scelmo's offline gene text looks for them: "${SCELMO_DATA_DIR:-<OS cache>/scelmo}/go/".
#
# Debian and Ubuntu package them (r-bioc-org.hs.eg.db, r-bioc-go.db) as plain SQLite files,
# so no R is needed: the packages are downloaded with `apt-get download` (no root, nothing is
# installed) and unpacked with `dpkg-deb -x`. Elsewhere, take the same two files from the
# Bioconductor source tarballs of org.Hs.eg.db and GO.db (inst/extdata/).
#
# GO terms are optional: when apt-get is missing or the packages are not in the apt sources,
# this script says so and exits 0 (scelmo then writes names and aliases only).
set -euo pipefail

if [[ -n "${SCELMO_DATA_DIR:-}" ]]; then
    data_dir="$SCELMO_DATA_DIR"
elif [[ "$(uname -s 2>/dev/null || true)" == "Darwin" ]]; then
    data_dir="$HOME/Library/Caches/scelmo"
else
    data_dir="${XDG_CACHE_HOME:-$HOME/.cache}/scelmo"
fi
dest="$data_dir/go"

if [[ -s "$dest/org.Hs.eg.sqlite" && -s "$dest/GO.sqlite" && "${1:-}" != "--force" ]]; then
    echo "GO annotation files already in $dest (pass --force to fetch again)."
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
    echo "apt-get/dpkg-deb not available: skipping the GO annotation files. scelmo's offline gene text"
    echo "will hold names and aliases only. To add GO terms, put org.Hs.eg.sqlite and GO.sqlite (from the"
    echo "Bioconductor tarballs of org.Hs.eg.db and GO.db, inst/extdata/) into $dest/."
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

packages=(r-bioc-org.hs.eg.db r-bioc-go.db)
if ! apt-get download "${packages[@]}" >download.log 2>&1; then
    # A fresh container often has empty package lists; refreshing them needs root.
    if [[ "$(id -u)" == "0" ]] && apt-get update -qq >/dev/null 2>&1 && apt-get download "${packages[@]}" >download.log 2>&1; then
        :
    else
        echo "Could not download ${packages[*]} with apt-get (see below); skipping the GO annotation files."
        echo "Run 'apt-get update' (as root) and try again, or place the two files into $dest/ by hand."
        tail -n 5 download.log
        exit 0
    fi
fi

mkdir -p extracted
for deb in ./*.deb; do
    dpkg-deb -x "$deb" extracted
done

mkdir -p "$dest"
for name in org.Hs.eg.sqlite GO.sqlite; do
    found="$(find extracted -name "$name" -type f | head -n 1)"
    if [[ -z "$found" ]]; then
        echo "error: $name is not in the downloaded packages (${packages[*]}); the packaging changed." >&2
        exit 1
    fi
    # Copy under a temporary name first so that an interrupted copy never looks complete.
    cp "$found" "$dest/.$name.partial"
    mv "$dest/.$name.partial" "$dest/$name"
done
echo "GO annotation files placed in $dest:"
ls -l "$dest/org.Hs.eg.sqlite" "$dest/GO.sqlite"
