/* vm: internal header shared by vm.c, vm_guest.c and vm_image.c. */
#ifndef PYTI_VM_INT_H
#define PYTI_VM_INT_H

#include <libvirt/libvirt.h>

#include "vm.h"

struct vm_conn {
	virConnectPtr lc;
	char *uri;
};

/* err = "<what>: <libvirt's last error message>"; returns -1. */
int vm_lverr(struct pyti_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vm_xml_escape(struct buf *b, const char *s);

#endif
