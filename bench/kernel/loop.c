/*
 * The C floor for the kernel backend's figures: the same ioctls and data_fd calls as
 * @lockstep/vfio, in a plain loop, compiled with the machine's gcc at bench time.
 * Structures and numbers are written from include/uapi/linux/vfio.h and iommufd.h.
 *
 *   loop CDEV ITERATIONS SESSIONS
 *
 * Prints one JSON object: µs per GET MIG_DEVICE_STATE, µs per arc (RUNNING <-> RUNNING_P2P) as
 * one SET alone and as the backend does an arc (SET, then GET to check the state), and data_fd MB/s (time spent in read() over whole saving sessions, and in write() over
 * resuming sessions fed with what was read).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define VFIO_DEVICE_RESET 0x3b6f
#define VFIO_DEVICE_FEATURE 0x3b75
#define VFIO_DEVICE_BIND_IOMMUFD 0x3b76
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT 0x3b77
#define IOMMU_IOAS_ALLOC 0x3b81
#define FEATURE_GET (1u << 16)
#define FEATURE_SET (1u << 17)
#define MIG_DEVICE_STATE 2u
enum { STOP = 1, RUNNING = 2, STOP_COPY = 3, RESUMING = 4, RUNNING_P2P = 5 };

struct bind { uint32_t argsz, flags; int32_t iommufd; uint32_t out_devid; uint64_t token; };
struct ioas { uint32_t size, flags, out_ioas_id; };
struct attach { uint32_t argsz, flags, pt_id, pasid; };
struct mig { uint32_t argsz, flags; uint32_t device_state; int32_t data_fd; };

static int fd;

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int set_state(uint32_t s) {
  struct mig m = { sizeof m, MIG_DEVICE_STATE | FEATURE_SET, s, -1 };
  if (ioctl(fd, VFIO_DEVICE_FEATURE, &m) < 0) { perror("set state"); exit(1); }
  return m.data_fd;
}

static uint32_t get_state(void) {
  struct mig m = { sizeof m, MIG_DEVICE_STATE | FEATURE_GET, 0, -1 };
  if (ioctl(fd, VFIO_DEVICE_FEATURE, &m) < 0) { perror("get state"); exit(1); }
  return m.device_state;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: loop CDEV ITERATIONS SESSIONS\n"); return 2; }
  int n = atoi(argv[2]), sessions = atoi(argv[3]);
  fd = open(argv[1], O_RDWR | O_CLOEXEC);
  int iommu = open("/dev/iommu", O_RDWR | O_CLOEXEC);
  struct bind b = { sizeof b, 0, iommu, 0, 0 };
  struct ioas a = { sizeof a, 0, 0 };
  if (fd < 0 || iommu < 0 || ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &b) < 0 || ioctl(iommu, IOMMU_IOAS_ALLOC, &a) < 0) {
    perror("open/bind");
    return 1;
  }
  struct attach t = { sizeof t, 0, a.out_ioas_id, 0 };
  if (ioctl(fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &t) < 0) { perror("attach"); return 1; }
  ioctl(fd, VFIO_DEVICE_RESET);

  double t0 = now_us();
  for (int i = 0; i < n; i++) get_state();
  double get_us = (now_us() - t0) / n;

  /* One SET per arc, and then as the backend does it: SET, then GET to check the state. */
  t0 = now_us();
  for (int i = 0; i < n; i++) { set_state(RUNNING_P2P); set_state(RUNNING); }
  double set_us = (now_us() - t0) / (2.0 * n);

  t0 = now_us();
  for (int i = 0; i < n; i++) {
    set_state(RUNNING_P2P);
    if (get_state() != RUNNING_P2P) { fprintf(stderr, "not in RUNNING_P2P\n"); return 1; }
    set_state(RUNNING);
    if (get_state() != RUNNING) { fprintf(stderr, "not in RUNNING\n"); return 1; }
  }
  double arc_us = (now_us() - t0) / (2.0 * n);

  static uint8_t stream[1 << 16], buf[1 << 16];
  double read_us = 0, write_us = 0;
  long read_bytes = 0, write_bytes = 0;
  for (int s = 0; s < sessions; s++) {
    set_state(RUNNING_P2P); set_state(STOP);
    int data = set_state(STOP_COPY);
    long got = 0;
    for (;;) {
      double r0 = now_us();
      ssize_t k = read(data, buf, sizeof buf);
      read_us += now_us() - r0;
      if (k < 0) { perror("read"); return 1; }
      if (k == 0) break;
      memcpy(stream + got, buf, k);
      got += k;
    }
    close(data);
    read_bytes += got;
    set_state(STOP);
    int in = set_state(RESUMING);
    double w0 = now_us();
    if (write(in, stream, got) != got) { perror("write"); return 1; }
    write_us += now_us() - w0;
    write_bytes += got;
    set_state(STOP);
    close(in);
    set_state(RUNNING_P2P); set_state(RUNNING);
  }
  if (get_state() != RUNNING) { fprintf(stderr, "device not back in RUNNING\n"); return 1; }
  printf("{\"getStateUs\":%.3f,\"setOnlyUs\":%.3f,\"arcUs\":%.3f,\"readMBps\":%.3f,\"writeMBps\":%.3f,\"sessionBytes\":%ld}\n", get_us, set_us, arc_us,
         read_bytes / read_us, write_bytes / write_us, read_bytes / (sessions ? sessions : 1));
  return 0;
}
