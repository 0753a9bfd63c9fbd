/*
 * A second process for the kernel suite: it opens a VFIO device the way any user does (cdev,
 * /dev/iommu, bind, IOAS, attach), then either holds it until killed, or leaves it in a state
 * and exits as a crashed coordinator would (the state outlives the process).
 *
 *   holder hold CDEV          bind, print "held", wait for a signal
 *   holder leave CDEV STATE   bind, one SET MIG_DEVICE_STATE to STATE (a uAPI number), exit
 *
 * Structures and numbers are written from include/uapi/linux/vfio.h and iommufd.h.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define VFIO_DEVICE_FEATURE 0x3b75
#define VFIO_DEVICE_BIND_IOMMUFD 0x3b76
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT 0x3b77
#define IOMMU_IOAS_ALLOC 0x3b81
#define FEATURE_SET (1u << 17)
#define FEATURE_MIG_DEVICE_STATE 2u

struct bind { uint32_t argsz, flags; int32_t iommufd; uint32_t out_devid; uint64_t token; };
struct ioas { uint32_t size, flags, out_ioas_id; };
struct attach { uint32_t argsz, flags, pt_id, pasid; };
struct mig { uint32_t argsz, flags; uint32_t device_state; int32_t data_fd; };

static int fail(const char *what) { perror(what); return 1; }

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: holder hold CDEV | holder leave CDEV STATE\n"); return 2; }
  int fd = open(argv[2], O_RDWR | O_CLOEXEC);
  int iommu = open("/dev/iommu", O_RDWR | O_CLOEXEC);
  if (fd < 0 || iommu < 0) return fail("open");
  struct bind b = { sizeof b, 0, iommu, 0, 0 };
  if (ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &b) < 0) return fail("bind");
  struct ioas a = { sizeof a, 0, 0 };
  if (ioctl(iommu, IOMMU_IOAS_ALLOC, &a) < 0) return fail("ioas");
  struct attach t = { sizeof t, 0, a.out_ioas_id, 0 };
  if (ioctl(fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &t) < 0) return fail("attach");
  if (strcmp(argv[1], "hold") == 0) {
    printf("held\n");
    fflush(stdout);
    for (;;) pause();
  }
  if (strcmp(argv[1], "leave") == 0 && argc == 4) {
    struct mig m = { sizeof m, FEATURE_MIG_DEVICE_STATE | FEATURE_SET, (uint32_t)atoi(argv[3]), -1 };
    if (ioctl(fd, VFIO_DEVICE_FEATURE, &m) < 0) return fail("set state");
    printf("left in %u\n", m.device_state);
    return 0; /* no reset, no close: as if it crashed */
  }
  fprintf(stderr, "usage: holder hold CDEV | holder leave CDEV STATE\n");
  return 2;
}
