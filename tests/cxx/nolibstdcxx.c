/* tests/cxx/nolibstdcxx.c - a C program that must run with memalloc and
 * without libstdc++: exits 1 if libstdc++ is mapped into the process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    char *p = malloc(100);
    strcpy(p, "memalloc");
    free(p);
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return 2;
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (strstr(line, "libstdc++") != NULL)
            found = 1;
    fclose(f);
    if (found) {
        fprintf(stderr, "libstdc++ is mapped into a C program\n");
        return 1;
    }
    printf("no libstdc++ in a C program: ok\n");
    return 0;
}
