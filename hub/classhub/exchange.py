"""nbgrader's submit step, with the submission readable by the course's instructors only.

nbgrader's own exchange makes each submission world-readable (files 0644, its folder 0777) and hides it
by name alone: ``inbound/`` cannot be listed, and the folder's name ends in a random string. A student
who learns one name (a shared screen, a path in an error message) could read that submission, and its
``submission_secret.txt`` names the student's feedback file. On the hub, ``inbound/`` belongs to the
instructors' group with the set-group-ID bit (``classhub.setup``), so a submission is created in that
group, and this class makes it 0640 for files and 0750 for folders (0770 for the top one, which the
instructors remove after collecting): the student and the instructors, nobody else.

The students' nbgrader configuration names it: ``c.ExchangeFactory.submit = "classhub.exchange.PrivateSubmit"``.
"""

from __future__ import annotations

import os

from nbgrader.exchange.default.submit import ExchangeSubmit

FILE_MODE = 0o640
FOLDER_MODE = 0o750
TOP_FOLDER_MODE = 0o770


class PrivateSubmit(ExchangeSubmit):
    def inbound(self, path) -> bool:
        inbound = os.path.abspath(self.inbound_path)
        return os.path.commonpath([os.path.abspath(path), inbound]) == inbound

    def do_copy(self, src, dest):
        """nbgrader's copy, then the submission's folder made anew so it keeps inbound/'s set-group-ID bit.

        copytree copies the student's folder mode at the end, and a chmod by someone outside the group
        drops that bit: the timestamp and the secret nbgrader writes next would be in the student's group.
        A folder made by mkdir inside inbound/ inherits the group and the bit; the copied files move in.
        """
        super().do_copy(src, dest)
        if not self.inbound(dest):
            return
        copied = dest + ".copied"
        os.rename(dest, copied)
        os.mkdir(dest)
        for name in os.listdir(copied):
            os.rename(os.path.join(copied, name), os.path.join(dest, name))
        os.rmdir(copied)

    def set_perms(self, dest, fileperms, dirperms):
        if self.inbound(dest):
            fileperms, dirperms = FILE_MODE, FOLDER_MODE
        super().set_perms(dest, fileperms, dirperms)

    def copy_files(self):
        super().copy_files()
        # nbgrader opened the submission's own folder to everyone (0777) after set_perms; close it.
        os.chmod(os.path.join(self.inbound_path, self.assignment_filename), TOP_FOLDER_MODE)
