# Container images, included by the top-level Makefile.
#
#   make image-rocm | image-cuda            build primus-bridge:<tag> from docker/Dockerfile.<platform>
#   make push REGISTRY=host/team            tag and push the built images (PLATFORMS="rocm cuda")
#   make print-versions                     every pin and the tag each image gets
#
# Every version comes from docker/versions.env; the tag adds the git revision (and -dirty when the
# files that go into the image differ from that commit), so a tag names the code inside the image.
# CONTAINER_ENGINE=docker (default) or podman.

IMAGES_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
include $(IMAGES_DIR)/versions.env
VERSION_KEYS := $(shell sed -n 's/^\([A-Z][A-Z0-9_]*\)=.*/\1/p' $(IMAGES_DIR)/versions.env)
SHARED_KEYS := $(filter-out ROCM_% CUDA_%,$(VERSION_KEYS))

CONTAINER_ENGINE ?= docker
REGISTRY ?=
PLATFORMS ?= rocm cuda
# What the images copy from this checkout: a change here that is not committed makes the tag -dirty.
IMAGE_INPUTS := pyproject.toml constraints.txt README.md primus_bridge recipes examples docker

# Expanded only when a recipe needs them, so other make targets never run git.
GIT_SHA = $(shell git rev-parse --short=12 HEAD 2>/dev/null)
GIT_DIRTY = $(if $(shell git status --porcelain -- $(IMAGE_INPUTS) 2>/dev/null),-dirty)
GIT_REVISION = $(shell git rev-parse HEAD 2>/dev/null)$(GIT_DIRTY)

UPPER_rocm := ROCM
UPPER_cuda := CUDA
platform_var = $($(UPPER_$(1))_$(2))
# rocm7.15-torch2.12.0-mcore0.19.2-mbridge0.6.2-g<sha>[-dirty]; '+' local versions cannot go in a tag.
image_tag = $(1)$(call platform_var,$(1),VERSION)-torch$(firstword $(subst +, ,$(call platform_var,$(1),TORCH_VERSION)))-mcore$(MEGATRON_CORE_VERSION)-mbridge$(MEGATRON_BRIDGE_VERSION)-g$(GIT_SHA)$(GIT_DIRTY)
local_ref = $(IMAGE_NAME):$(call image_tag,$(1))
build_args = $(foreach key,$(filter $(UPPER_$(1))_%,$(VERSION_KEYS)) $(SHARED_KEYS),--build-arg $(key)=$($(key)))

check_engine = $(if $(filter docker podman,$(notdir $(CONTAINER_ENGINE))),,$(error CONTAINER_ENGINE=$(CONTAINER_ENGINE): use docker or podman))
check_git = $(if $(GIT_SHA),,$(error image tags need the git revision: run from a git checkout of primus-bridge))
check_registry = $(if $(REGISTRY),,$(error set REGISTRY, e.g. make push REGISTRY=registry.example.com/team))
check_platform = $(if $(UPPER_$(1)),,$(error PLATFORMS: unknown platform '$(1)'; use rocm and/or cuda))

.PHONY: image-rocm image-cuda push print-versions $(addprefix push-,$(PLATFORMS))

image-rocm image-cuda: image-%:
	$(check_engine)$(check_git)$(CONTAINER_ENGINE) build --file $(IMAGES_DIR)/Dockerfile.$* --target app --tag $(call local_ref,$*) $(call build_args,$*) --build-arg GIT_REVISION=$(GIT_REVISION) .

push: $(addprefix push-,$(PLATFORMS))

$(addprefix push-,$(PLATFORMS)): push-%:
	$(call check_platform,$*)$(check_engine)$(check_git)$(check_registry)$(CONTAINER_ENGINE) tag $(call local_ref,$*) $(REGISTRY)/$(call local_ref,$*)
	$(CONTAINER_ENGINE) push $(REGISTRY)/$(call local_ref,$*)

print-versions:
	$(check_git)
	@$(foreach key,$(VERSION_KEYS),echo '$(key)=$($(key))';)
	@$(foreach platform,rocm cuda,echo 'image-$(platform): $(call local_ref,$(platform))';)
