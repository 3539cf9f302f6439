# Plugin requirements for `packer init` (Packer >= 1.9, as `make deploy` uses).
#
# Kept in a file of its own: Debian's packer 1.6.6, which `make deploy-check`
# uses offline, predates `required_plugins` and rejects this block, so the
# check validates every other file of this directory without it.
packer {
  required_version = ">= 1.9.0"

  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = "~> 1.3"
    }
  }
}
