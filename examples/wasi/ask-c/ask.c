/* ask-c: an unmodified C program reading stdin. In a system where it `uses`
 * the console service, its stdin is what is typed on the serial console. */
#include <stdio.h>
#include <string.h>

int main(void) {
    char name[64];
    printf("What is your name?\n");
    fflush(stdout);
    if (!fgets(name, sizeof name, stdin)) {
        printf("no input\n");
        return 1;
    }
    name[strcspn(name, "\r\n")] = '\0';
    printf("hello, %s!\n", name);
    return 0;
}
